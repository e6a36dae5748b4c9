//go:build !amd64 || purego

package media

// aes128Keys is an AES-128 key schedule for AES instructions, which this
// build does not use: newAES128Keys always returns nil, and the SRTP
// sender encrypts with crypto/aes block by block.
type aes128Keys [11 * 16]byte

func newAES128Keys([]byte) *aes128Keys { return nil }

func (rk *aes128Keys) encryptBlocks(dst, src []byte) {
	panic("media: aes128Keys.encryptBlocks without AES instructions")
}
