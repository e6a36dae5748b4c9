//go:build linux

package media

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestMmsghdrLayout checks that mmsghdr is laid out as the kernel's struct
// mmsghdr: a msghdr and an unsigned int, padded to the msghdr's alignment.
func TestMmsghdrLayout(t *testing.T) {
	hdr := unsafe.Sizeof(unix.Msghdr{})
	align := unsafe.Alignof(unix.Msghdr{})
	want := (hdr + 4 + align - 1) / align * align
	require.Equal(t, want, unsafe.Sizeof(mmsghdr{}))
	require.Equal(t, hdr, unsafe.Offsetof(mmsghdr{}.n))
}
