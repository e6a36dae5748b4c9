package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOpenUsers(t *testing.T) {
	u := OpenUsers()
	require.False(t, u.AuthRequired())
	require.Equal(t, "100-199 (open)", u.String())
	require.Equal(t, 100, u.Len())
	tests := []struct {
		ext  string
		want bool
	}{
		{"100", true}, {"150", true}, {"199", true},
		{"099", false}, {"99", false}, {"200", false}, {"1000", false},
		{"+10", false}, {"1e2", false}, {" 100", false}, {"100 ", false},
		{"", false}, {"alice", false}, {"0100", false},
	}
	for _, tt := range tests {
		t.Run(tt.ext, func(t *testing.T) {
			require.Equal(t, tt.want, u.Exists(tt.ext))
			pw, ok := u.Password(tt.ext)
			require.False(t, ok, "the open directory has no passwords")
			require.Empty(t, pw)
		})
	}
}

func TestParseUsers(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  map[string]string
	}{
		{
			name:  "one user",
			input: "100:pw",
			want:  map[string]string{"100": "pw"},
		},
		{
			name:  "comments, blank lines and CRLF",
			input: "# the office\r\n\r\n100:pw100\r\n   # indented comment\r\n  101:pw101  \r\n",
			want:  map[string]string{"100": "pw100", "101": "pw101"},
		},
		{
			name:  "only the first colon separates",
			input: "alice:a:b:c\n",
			want:  map[string]string{"alice": "a:b:c"},
		},
		{
			name:  "a # inside a password is kept",
			input: "bob:not#a comment\n",
			want:  map[string]string{"bob": "not#a comment"},
		},
		{
			name:  "user-unreserved characters",
			input: "a.b-c_d!~*'()&=+$,;?/:pw\n",
			want:  map[string]string{"a.b-c_d!~*'()&=+$,;?/": "pw"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseUsers(strings.NewReader(tt.input), "users.txt")
			require.NoError(t, err)
			require.True(t, u.AuthRequired())
			require.Equal(t, len(tt.want), u.Len())
			for user, want := range tt.want {
				require.True(t, u.Exists(user))
				pw, ok := u.Password(user)
				require.True(t, ok)
				require.Equal(t, want, pw)
			}
			require.False(t, u.Exists("nobody"))
			_, ok := u.Password("nobody")
			require.False(t, ok)
		})
	}
}

func TestParseUsersErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{name: "missing colon", input: "# header\n100 pw\n", want: "users.txt:2: missing colon"},
		{name: "empty user", input: ":pw\n", want: "users.txt:1: empty user"},
		{name: "empty password", input: "100:pw\n101:\n", want: `users.txt:2: user "101" has an empty password`},
		{name: "space in user", input: "al ice:pw\n", want: `users.txt:1: user "al ice" is not a SIP user part: character ' '`},
		{name: "at sign in user", input: "a@b:pw\n", want: `users.txt:1: user "a@b" is not a SIP user part`},
		{name: "escape in user", input: "%41:pw\n", want: `users.txt:1: user "%41" is not a SIP user part`},
		{name: "non-ASCII user", input: "jos\u00e9:pw\n", want: "is not a SIP user part"},
		{name: "duplicate user", input: "100:a\n101:b\n\n100:c\n", want: `users.txt:4: duplicate user "100", first on line 1`},
		{name: "no users", input: "# nobody yet\n\n", want: "users.txt: no users"},
		{name: "empty file", input: "", want: "users.txt: no users"},
		{name: "line too long", input: "100:pw\n101:" + strings.Repeat("x", maxUsersLine) + "\n", want: "users.txt:2: line longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseUsers(strings.NewReader(tt.input), "users.txt")
			require.Nil(t, u)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestLoadUsers(t *testing.T) {
	u, err := LoadUsers(filepath.Join("testdata", "users.txt"))
	require.NoError(t, err)
	require.Equal(t, "3 users from testdata/users.txt", u.String())
	pw, ok := u.Password("101")
	require.True(t, ok)
	require.Equal(t, "battery:staple", pw)

	_, err = LoadUsers(filepath.Join("testdata", "users-duplicate.txt"))
	require.ErrorContains(t, err, `testdata/users-duplicate.txt:4: duplicate user "100", first on line 1`)

	_, err = LoadUsers(filepath.Join("testdata", "no-such-file.txt"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "no-such-file.txt")

	one, err := ParseUsers(strings.NewReader("100:pw"), "one.txt")
	require.NoError(t, err)
	require.Equal(t, "1 user from one.txt", one.String())
}

// FuzzParseUsers feeds the parser arbitrary files: it must never panic,
// every error must name the file, and whatever it accepts must be what the
// lines say, so that writing it back out parses to the same directory.
func FuzzParseUsers(f *testing.F) {
	f.Add([]byte("100:pw\n# comment\n\n101:a:b\r\n"))
	f.Add([]byte("a:1\na:2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := ParseUsers(strings.NewReader(string(data)), "fuzz.txt")
		if err != nil {
			require.Nil(t, u)
			require.True(t, strings.HasPrefix(err.Error(), "fuzz.txt"), "error %q does not name the file", err)
			return
		}
		require.True(t, u.AuthRequired())
		require.Positive(t, u.Len())
		var b strings.Builder
		for _, user := range slices.Sorted(maps.Keys(u.passwords)) {
			pw, ok := u.Password(user)
			require.True(t, ok)
			require.True(t, u.Exists(user))
			require.NotEmpty(t, user)
			require.NotEmpty(t, pw)
			require.NoError(t, checkSIPUser(user))
			require.NotContains(t, pw, "\n")
			fmt.Fprintf(&b, "%s:%s\n", user, pw)
		}
		again, err := ParseUsers(strings.NewReader(b.String()), "again.txt")
		require.NoError(t, err)
		require.Equal(t, u.passwords, again.passwords)
		require.Equal(t, fmt.Sprintf("%d", u.Len()), strings.Fields(u.String())[0])
	})
}
