package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// The open directory's extensions: what a PBX run without a users file lets
// register, so that two softphones can try park without any setup.
const (
	openFirstExtension = 100
	openLastExtension  = 199
)

// maxUsersLine bounds one line of a users file; a longer one is an error
// rather than an allocation a stray binary file could make huge.
const maxUsersLine = 4096

// Users is the extension directory: either the open default (extensions
// 100-199, any password, no authentication) or a file of user:password lines.
// It never changes once built, so it is safe for concurrent use.
type Users struct {
	open      bool
	passwords map[string]string // nil when open
	source    string            // the file name, for String
}

// OpenUsers returns the default directory: extensions 100 to 199 register
// without a password.
func OpenUsers() *Users { return &Users{open: true} }

// LoadUsers reads a users file (see ParseUsers).
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError names the file
	}
	defer f.Close()
	return ParseUsers(f, path)
}

// ParseUsers reads "user:password" lines from r; name is the file's name in
// errors and in String. Blank lines and lines starting with # are skipped;
// spaces around a line are dropped, the rest is taken as written, so a
// password may hold spaces, colons and # (only the first colon separates).
// Each user must be a SIP user part and appear once, each password be
// non-empty, and there must be at least one user. Errors name file:line and
// what is wrong.
func ParseUsers(r io.Reader, name string) (*Users, error) {
	u := &Users{passwords: make(map[string]string), source: name}
	firstLine := make(map[string]int)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxUsersLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, password, ok := strings.Cut(text, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("%s:%d: missing colon: want user:password", name, line)
		case user == "":
			return nil, fmt.Errorf("%s:%d: empty user before the colon", name, line)
		case password == "":
			return nil, fmt.Errorf("%s:%d: user %q has an empty password", name, line, user)
		}
		if err := checkSIPUser(user); err != nil {
			return nil, fmt.Errorf("%s:%d: user %q is not a SIP user part: %w", name, line, user, err)
		}
		if prev, dup := firstLine[user]; dup {
			return nil, fmt.Errorf("%s:%d: duplicate user %q, first on line %d", name, line, user, prev)
		}
		firstLine[user] = line
		u.passwords[user] = password
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, line+1, maxUsersLine)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(u.passwords) == 0 {
		return nil, fmt.Errorf("%s: no users: want at least one user:password line", name)
	}
	return u, nil
}

// checkSIPUser accepts the characters RFC 3261 §25.1 allows unescaped in a
// user part (unreserved and user-unreserved). %-escapes are refused: they
// would give one user two spellings, and the registrar compares To users
// as written.
func checkSIPUser(user string) error {
	for i := 0; i < len(user); i++ {
		c := user[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.!~*'()&=+$,;?/", c) >= 0:
		default:
			return fmt.Errorf("character %q at byte %d not allowed", c, i)
		}
	}
	return nil
}

// Exists reports whether ext is an extension of the directory.
func (u *Users) Exists(ext string) bool {
	if u.open {
		return isOpenExtension(ext)
	}
	_, ok := u.passwords[ext]
	return ok
}

// isOpenExtension reports whether ext is written exactly as one of the open
// extensions: three digits, no sign or leading zero.
func isOpenExtension(ext string) bool {
	if len(ext) != 3 || ext[0] < '1' || ext[0] > '9' {
		return false
	}
	n, err := strconv.Atoi(ext)
	return err == nil && openFirstExtension <= n && n <= openLastExtension && strconv.Itoa(n) == ext
}

// Password returns ext's password and whether it has one: false for an
// unknown extension and for every extension of the open directory, which
// needs none.
func (u *Users) Password(ext string) (string, bool) {
	if u.open {
		return "", false
	}
	p, ok := u.passwords[ext]
	return p, ok
}

// AuthRequired reports whether phones must authenticate: true for a users
// file, false for the open directory.
func (u *Users) AuthRequired() bool { return !u.open }

// Len returns the number of extensions.
func (u *Users) Len() int {
	if u.open {
		return openLastExtension - openFirstExtension + 1
	}
	return len(u.passwords)
}

// String describes the directory for a log line: "100-199 (open)" or
// "3 users from users.txt".
func (u *Users) String() string {
	if u.open {
		return fmt.Sprintf("%d-%d (open)", openFirstExtension, openLastExtension)
	}
	noun := "users"
	if len(u.passwords) == 1 {
		noun = "user"
	}
	return fmt.Sprintf("%d %s from %s", len(u.passwords), noun, u.source)
}
