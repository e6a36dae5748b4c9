package parkflags

import (
	"bytes"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadClusterKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0x0a}, 32) // newlines: raw, not text
	hexKey := strings.Repeat("0A", 32)
	tests := []struct {
		name    string
		content []byte
		want    []byte
		err     string
	}{
		{"raw", raw, raw, ""},
		{"hex", []byte(hexKey), raw, ""},
		{"hex, lower case, a newline", []byte(strings.ToLower(hexKey) + "\n"), raw, ""},
		{"too short", []byte("abcd"), nil, "got 4 bytes"},
		{"hex of 31 bytes", []byte(hexKey[:62]), nil, "64 hex digits"},
		{"not hex", []byte(strings.Repeat("zz", 32)), nil, "64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			require.NoError(t, os.WriteFile(path, tt.content, 0o600))
			got, err := ReadClusterKey(path)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				require.ErrorContains(t, err, "-cluster-key")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// The password never shows in -check's output, and one from a file is
// used with the URL's user.
func TestRedisPasswordStaysHidden(t *testing.T) {
	pass := filepath.Join(t.TempDir(), "pass")
	require.NoError(t, os.WriteFile(pass, []byte("from-file\r\nignored\n"), 0o600))
	resolve := func(args ...string) (ClusterSettings, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c := RegisterCluster(fs)
		require.NoError(t, fs.Parse(args))
		return c.Resolve(netip.MustParseAddrPort("127.0.0.1:5060"))
	}
	s, err := resolve("-redis", "rediss://ops:in-url@redis.example.net:6380/2")
	require.NoError(t, err)
	require.Equal(t, "ops", s.Redis.Username)
	require.Equal(t, "in-url", s.Redis.Password)
	require.NotNil(t, s.Redis.TLSConfig, "rediss:// is TLS")
	var out strings.Builder
	s.Print(&out)
	require.NotContains(t, out.String(), "in-url")
	require.Contains(t, out.String(), "rediss://ops:xxxxx@redis.example.net:6380/2")
	require.Contains(t, out.String(), "the system's roots")

	s, err = resolve("-redis", "rediss://ops@redis.example.net:6380/2", "-redis-password-file", pass)
	require.NoError(t, err)
	require.Equal(t, "ops", s.Redis.Username)
	require.Equal(t, "from-file", s.Redis.Password, "the first line, without its CR")

	_, err = resolve("-redis", "redis://:secret@host:6379/0?bad=1")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")
}
