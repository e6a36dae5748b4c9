//go:build !purego

package media

import "golang.org/x/sys/cpu"

// sha1BlocksSHANI runs SHA-1's compression function over p's 64-byte
// blocks from state h (srtp_sha1_amd64.s).
//
//go:noescape
func sha1BlocksSHANI(h *[5]uint32, p []byte)

// cpuidSHA reports whether the CPU has the SHA extensions.
func cpuidSHA() bool

// hasSHA1Blocks reports whether sha1Blocks can run here. It asks CPUID,
// which is slow in a virtual machine: call it once per key, not per packet.
func hasSHA1Blocks() bool {
	return cpu.X86.HasSSSE3 && cpu.X86.HasSSE41 && cpuidSHA()
}

// sha1Blocks runs SHA-1's compression function over p (a whole number of
// 64-byte blocks) from state h; only where hasSHA1Blocks.
func sha1Blocks(h *[5]uint32, p []byte) {
	if len(p)%64 != 0 {
		panic("media: sha1Blocks: partial block")
	}
	sha1BlocksSHANI(h, p)
}
