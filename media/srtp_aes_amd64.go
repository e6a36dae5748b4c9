//go:build !purego

package media

import "golang.org/x/sys/cpu"

// aes128Keys is an AES-128 key schedule: the 11 round keys, as AES-NI
// takes them.
type aes128Keys [11 * 16]byte

// aes128ExpandKey writes key's 11 round keys to rk (FIPS 197 §5.2, with
// AESKEYGENASSIST).
//
//go:noescape
func aes128ExpandKey(key *byte, rk *aes128Keys)

// aes128EncryptBlocks encrypts n 16-byte blocks from src to dst, four at a
// time; n is a multiple of 4 and dst may be src.
//
//go:noescape
func aes128EncryptBlocks(rk *aes128Keys, dst, src *byte, n int)

// newAES128Keys returns key's round keys for encryptBlocks, or nil where
// the CPU has no AES instructions (the caller then encrypts with
// crypto/aes block by block).
func newAES128Keys(key []byte) *aes128Keys {
	if !cpu.X86.HasAES || len(key) != 16 {
		return nil
	}
	rk := new(aes128Keys)
	aes128ExpandKey(&key[0], rk)
	return rk
}

// encryptBlocks encrypts src to dst in ECB, four blocks at a time so that
// the AES units work on several at once: len(src) is a multiple of 64, and
// dst is at least as long (it may be src).
func (rk *aes128Keys) encryptBlocks(dst, src []byte) {
	if len(src)%64 != 0 || len(dst) < len(src) {
		panic("media: aes128Keys.encryptBlocks: bad lengths")
	}
	if len(src) > 0 {
		aes128EncryptBlocks(rk, &dst[0], &src[0], len(src)/16)
	}
}
