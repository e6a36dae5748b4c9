//go:build linux

package media

import (
	"testing"
	"time"
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

// TestStopWaitsForTheBatch checks that Stream.Stop does not return while a
// packet of the stream waits in its shard's batch: what the leg sends next
// (a relay continuing the sequence) must not be overtaken by it.
func TestStopWaitsForTheBatch(t *testing.T) {
	verifyNoLeaks(t)
	s := newScheduler(SchedulerOptions{Shards: 1}) // not started: the test is the shard
	t.Cleanup(func() { _ = s.Close() })
	port, err := NewSharedPort(listenLoopback(t), SharedPortOptions{Scheduler: s})
	require.NoError(t, err)
	t.Cleanup(func() { _ = port.Close() })
	require.NotNil(t, port.io.raw, "the Linux path batches")
	peer := newPhone(t)
	st, err := s.Play(port, peer.addr(), testFrames(PCMU, 3))
	require.NoError(t, err)
	sh := s.shards[0]

	sh.flushMu.Lock()
	st.tick(sh)
	require.True(t, st.inBatch.Load())
	stopped := make(chan struct{})
	go func() {
		st.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("Stop returned with the stream's packet still in the batch")
	case <-time.After(50 * time.Millisecond):
	}
	sh.flushBatch()
	sh.flushMu.Unlock()
	<-stopped
	require.EqualValues(t, 1, st.Stats().Packets)
	_, ssrc := peer.readFrom()
	require.Equal(t, st.SSRC(), ssrc)
}
