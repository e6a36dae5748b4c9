package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckPrintsTheEffectiveConfiguration(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"-check", "-orbits", "*7000-*7099,#1000-#1999,7000-7999", "-fallback", "sip:operator@127.0.0.1", "-attempts", "3"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	require.Empty(t, errOut.String())
	for _, line := range []string{
		"orbits      *7000-*7099 (100 orbits)",
		"orbits      #1000-#1999 (1000 orbits)",
		"orbits      7000-7999 (1000 orbits)",
		"total       2100 orbits",
		"attempts    3",
		"timeout     1m30s",
		"fallback    sip:operator@127.0.0.1",
		"listen      127.0.0.1:5060 (udp, tcp)",
	} {
		require.Contains(t, out.String(), line+"\n")
	}

	out.Reset()
	code = run([]string{"-check", "-allow", "10.0.0.0/8, 192.0.2.7", "-trust", "10.0.0.5", "-source-dialogs", "0", "-max-message", "8192"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	for _, line := range []string{
		"allow       10.0.0.0/8, 192.0.2.7",
		"trust       10.0.0.5",
		"failed-retrieves 20 per source per 1m0s, then 403 for 5m0s",
		"source-dialogs no limit",
		"source-subscriptions 200",
		"max-message 8192 bytes",
		"late-offer  off (INVITE without SDP: 488)",
	} {
		require.Contains(t, out.String(), line+"\n")
	}

	out.Reset()
	require.Equal(t, 0, run([]string{"-check", "-announce-parked"}, &out, &errOut))
	require.Contains(t, out.String(), "announce-parked true\n")
	require.Contains(t, out.String(), "announce    parker\n", "the parker hears the orbit by default")
	out.Reset()
	require.Equal(t, 0, run([]string{"-check", "-notify", "sip:chat@127.0.0.1, sip:bridge@127.0.0.1"}, &out, &errOut))
	require.Contains(t, out.String(), "notify      sip:chat@127.0.0.1, sip:bridge@127.0.0.1\n")
	require.Contains(t, out.String(), "prompts     built-in (English, espeak-ng)\n")

	out.Reset()
	require.Equal(t, 0, run([]string{"-check", "-late-offer"}, &out, &errOut))
	require.Contains(t, out.String(), "late-offer  on (offer in the 200, answer in the ACK)\n")

	out.Reset()
	require.Equal(t, 0, run([]string{"-check"}, &out, &errOut))
	require.Contains(t, out.String(), "orbits      701-799 (99 orbits)\n", "the contract's defaults need no flag")
	require.Contains(t, out.String(), "park-ext    700\n")
}

func TestBadFlagsExit2WithOneLineNamingTheFlag(t *testing.T) {
	notWAV := filepath.Join(t.TempDir(), "music.wav")
	require.NoError(t, os.WriteFile(notWAV, []byte("this is not a RIFF file"), 0o644))
	tests := []struct {
		args []string
		flag string
		rule string
	}{
		{[]string{"-orbits", "701-799,750-760"}, "-orbits", "overlap"},
		{[]string{"-orbits", "*99-*100"}, "-orbits", "above 100"},
		{[]string{"-orbits", "0100-0199"}, "-orbits", "1-9"},
		{[]string{"-timeout", "5s"}, "-timeout", "between 10s and 10m"},
		{[]string{"-timeout", "11m"}, "-timeout", "between 10s and 10m"},
		{[]string{"-attempts", "0"}, "-attempts", "between 1 and 10"},
		{[]string{"-attempts", "11"}, "-attempts", "between 1 and 10"},
		{[]string{"-recall-ring", "0s"}, "-recall-ring", "between"},
		{[]string{"-fallback", "tel:+15551234"}, "-fallback", "sip: URI"},
		{[]string{"-moh", filepath.Join(t.TempDir(), "missing.wav")}, "-moh", "no such file"},
		{[]string{"-moh", notWAV}, "-moh", "not a WAV"},
		{[]string{"-prompts", filepath.Join(t.TempDir(), "missing")}, "-prompts", "no such file"},
		{[]string{"-announce", "everyone"}, "-announce", "parker or none"},
		{[]string{"-notify", "sip:chat@127.0.0.1,mailto:ops@example.com"}, "-notify", "sip: URI"},
		{[]string{"-page", "tel:+15551234"}, "-page", "sip: URI"},
		{[]string{"-max-pages", "0"}, "-max-pages", "1 or more"},
		{[]string{"-prompts", filepath.Dir(notWAV)}, "-prompts", "no such prompt"},
		{[]string{"-policy", "newest"}, "-policy", "lru, lowest or random"},
		{[]string{"-listen", "localhost"}, "-listen", "IP:port"},
		{[]string{"-media-ip", "not-an-ip"}, "-media-ip", "IP address"},
		{[]string{"-rtp-ports", "30000-20000"}, "-rtp-ports", "low end first"},
		{[]string{"-rtp-ports", "80-90"}, "-rtp-ports", "1024-65535"},
		{[]string{"-log-level", "loud"}, "-log-level", "debug, info, warn or error"},
		{[]string{"-park-ext", "7 00"}, "-park-ext", "dialable"},
		{[]string{"-park-ext", "750"}, "-park-ext", "orbit range"},
		{[]string{"-listen", "0.0.0.0:5060"}, "-media-ip", "address phones reach"},
		{[]string{"-allow", "10.0.0.0/8,office"}, "-allow", "neither a CIDR prefix"},
		{[]string{"-trust", "10.0.0.0/33"}, "-trust", "neither a CIDR prefix"},
		{[]string{"-failed-retrieves", "-1"}, "-failed-retrieves", "0 (no limit) or more"},
		{[]string{"-source-dialogs", "-5"}, "-source-dialogs", "0 (no limit) or more"},
		{[]string{"-http", "8080"}, "-http", "host:port"},
		{[]string{"-tls-listen", "127.0.0.1:0"}, "-tls-listen", "needs -tls-cert and -tls-key"},
		{[]string{"-tls-listen", "localhost:5061", "-tls-cert", "c", "-tls-key", "k"}, "-tls-listen", "IP:port"},
		{[]string{"-tls-cert", "c.pem"}, "-tls-cert", "set -tls-listen too"},
		{[]string{"-tls-listen", "127.0.0.1:0", "-tls-cert", notWAV, "-tls-key", notWAV}, "-tls-cert", "-tls-key"},
		{[]string{"-http-token", "abc"}, "-http-token", "set -http too"},
		{[]string{"-http", "127.0.0.1:0", "-http-token", "a b"}, "-http-token", "white space"},
		{[]string{"-http", "127.0.0.1:0", "-http-token-file", filepath.Join(t.TempDir(), "none")}, "-http-token-file", "no such file"},
		{[]string{"-http", "127.0.0.1:0", "-http-token", "a", "-http-token-file", notWAV}, "-http-token-file", "once"},
		{[]string{"-source-subscriptions", "-5"}, "-source-subscriptions", "0 (no limit) or more"},
		{[]string{"-max-message", "100"}, "-max-message", "between 1024 and 32768"},
		{[]string{"-redis", "http://127.0.0.1:6379"}, "-redis", "redis://host:port/db"},
		{[]string{"-redis", "redis://127.0.0.1:1/0", "-lease", "1s"}, "-lease", "between 2s and 1m0s"},
		{[]string{"-cross-node", "maybe"}, "-cross-node", "proxy or redirect"},
		{[]string{"-redis", "redis://127.0.0.1:1/0", "-advertise", "nohost"}, "-advertise", "host:port"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			for _, check := range []bool{false, true} {
				args := tt.args
				if check {
					args = append([]string{"-check"}, args...)
				}
				var out, errOut bytes.Buffer
				require.Equal(t, 2, run(args, &out, &errOut))
				msg := strings.TrimSuffix(errOut.String(), "\n")
				require.NotContains(t, msg, "\n", "one line")
				require.Contains(t, msg, tt.flag)
				require.Contains(t, msg, tt.rule)
				require.Empty(t, out.String())
			}
		})
	}
}
