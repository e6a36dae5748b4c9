-- reap: drops every node whose lease ran out; returns their names.
return reap(now_ms())
