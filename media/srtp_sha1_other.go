//go:build !amd64 || purego

package media

// Without the SHA extensions' routine, the SRTP sender's HMAC goes through
// crypto/sha1.

func hasSHA1Blocks() bool { return false }

func sha1Blocks(*[5]uint32, []byte) {
	panic("media: sha1Blocks without the SHA extensions")
}
