-- advertise: ARGV node, epoch, address. Changes the SIP address the node's
-- incarnation advertises (known only once it listens).
local node, epoch, addr = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', node_key(node), 'epoch') ~= epoch then return redis.error_reply('CALLPARK_FENCED') end
redis.call('HSET', node_key(node), 'advertise', addr)
return 'OK'
