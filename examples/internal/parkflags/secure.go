package parkflags

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/orbit/redisorbit"
	"github.com/callpark/callpark/park/redispark"
)

// A cluster's store, secured (issue 17): Redis over TLS (rediss://) with
// the server's certificate checked against -redis-ca (or the system's
// roots) and, for Redis's mutual TLS, a client certificate; a password or
// ACL user whose password can stay off the command line
// (-redis-password-file, or the -redis URL in the -config file); and
// -cluster-key, the key every node shares to seal the handoffs of parked
// calls in Redis (redispark.Config.HandoffKey).

// SecureFlags are the flags that secure the cluster's Redis.
type SecureFlags struct {
	RedisCA, RedisCert, RedisKey, RedisPasswordFile, ClusterKey string
}

func (f *SecureFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.RedisCA, "redis-ca", "", "with a rediss:// -redis: the CA (a PEM `file`) that signed the Redis server's certificate; empty: the system's roots")
	fs.StringVar(&f.RedisCert, "redis-cert", "", "with a rediss:// -redis: this node's client certificate (a PEM `file`), for a Redis that requires them (tls-auth-clients yes); needs -redis-key")
	fs.StringVar(&f.RedisKey, "redis-key", "", "the private key of -redis-cert, a PEM `file`")
	fs.StringVar(&f.RedisPasswordFile, "redis-password-file", "", "read the Redis password from this `file` (its first line), so that it is not on the command line; the user, if any, stays in the -redis URL (rediss://user@host:port/0)")
	fs.StringVar(&f.ClusterKey, "cluster-key", "", "seal the handoffs of parked calls in Redis with this key, a `file` of 32 random bytes, raw or as 64 hex digits (head -c32 /dev/urandom | xxd -p -c64 > cluster.key); every node needs the same one")
}

// secure applies the flags to o, the options the -redis URL gave, and
// returns the cluster key (nil without -cluster-key).
func (f *SecureFlags) secure(o *redis.Options, rawURL string) ([]byte, error) {
	tlsFlag := ""
	switch {
	case f.RedisCA != "":
		tlsFlag = "-redis-ca"
	case f.RedisCert != "" || f.RedisKey != "":
		tlsFlag = "-redis-cert, -redis-key"
	}
	if tlsFlag != "" && o.TLSConfig == nil {
		return nil, fmt.Errorf("%s: -redis %s is not TLS: use rediss://", tlsFlag, redactURL(rawURL))
	}
	if o.TLSConfig != nil {
		o.TLSConfig.MinVersion = tls.VersionTLS12
	}
	if f.RedisCA != "" {
		pool, err := readCAPool("-redis-ca", f.RedisCA)
		if err != nil {
			return nil, err
		}
		o.TLSConfig.RootCAs = pool
	}
	if f.RedisCert != "" || f.RedisKey != "" {
		if f.RedisCert == "" || f.RedisKey == "" {
			return nil, errors.New("-redis-cert, -redis-key: give both, or neither")
		}
		pair, err := tls.LoadX509KeyPair(f.RedisCert, f.RedisKey)
		if err != nil {
			return nil, fmt.Errorf("-redis-cert %s, -redis-key %s: %w", f.RedisCert, f.RedisKey, err)
		}
		o.TLSConfig.Certificates = []tls.Certificate{pair}
	}
	if f.RedisPasswordFile != "" {
		if o.Password != "" {
			return nil, errors.New("-redis-password-file: the -redis URL has a password too; give it in one place")
		}
		b, err := os.ReadFile(f.RedisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("-redis-password-file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if o.Password = strings.TrimSuffix(line, "\r"); o.Password == "" {
			return nil, fmt.Errorf("-redis-password-file %s: the first line is empty", f.RedisPasswordFile)
		}
	}
	if f.ClusterKey == "" {
		return nil, nil
	}
	return ReadClusterKey(f.ClusterKey)
}

// ReadClusterKey reads a -cluster-key file: 32 bytes, or 64 hex digits
// (white space around them ignored).
func ReadClusterKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-cluster-key: %w", err)
	}
	if len(b) == redispark.HandoffKeyLen {
		return b, nil
	}
	text := bytes.TrimSpace(b)
	key := make([]byte, hex.DecodedLen(len(text)))
	if n, err := hex.Decode(key, text); err == nil && n == redispark.HandoffKeyLen {
		return key, nil
	}
	return nil, fmt.Errorf("-cluster-key %s: want 32 random bytes, raw or as 64 hex digits (head -c32 /dev/urandom | xxd -p -c64), got %d bytes", path, len(b))
}

// redactURL is a -redis URL fit for a log or -check: its password, if
// any, shown as xxxxx.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// any reports whether any of the flags is set, and names them.
func (f *SecureFlags) any() (string, bool) {
	var set []string
	for _, v := range []struct{ name, value string }{
		{"-redis-ca", f.RedisCA}, {"-redis-cert", f.RedisCert}, {"-redis-key", f.RedisKey},
		{"-redis-password-file", f.RedisPasswordFile}, {"-cluster-key", f.ClusterKey},
	} {
		if v.value != "" {
			set = append(set, v.name)
		}
	}
	return strings.Join(set, ", "), len(set) > 0
}

// joinError is an error of reaching Redis or joining the lot, with the
// (redacted) URL and a hint naming the flag to look at.
func joinError(url string, err error) error {
	if err == nil || errors.Is(err, redisorbit.ErrMismatch) {
		return err
	}
	return fmt.Errorf("-redis %s: %w%s", url, err, redisHint(err))
}

// redisHint says which flag to look at for an error of reaching Redis.
func redisHint(err error) string {
	msg := err.Error()
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "NOPERM"):
		return " (check the user and password: the -redis URL, -redis-password-file)"
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &hostname), strings.Contains(msg, "x509:"):
		return " (the Redis server's certificate: check -redis-ca and the URL's host)"
	case strings.Contains(msg, "tls:"), strings.Contains(msg, "connection reset"):
		return " (TLS: does Redis want rediss://, or a client certificate: -redis-cert, -redis-key?)"
	case errors.Is(err, io.EOF), strings.HasSuffix(msg, "EOF"):
		return " (Redis closed the connection: does it speak TLS only? then rediss://)"
	}
	return ""
}
