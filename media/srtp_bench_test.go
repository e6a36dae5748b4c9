package media

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// discardWriter is a PacketWriter that sends nothing: the send path's own
// CPU, without the system call that dominates it.
type discardWriter struct{}

func (discardWriter) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) { return len(b), nil }

// BenchmarkSRTPPerPacket compares the scheduler's send path for SRTP
// streams against plain ones (issue 17: at most 1.5× the plain per-packet
// CPU), in the same run, driven as BenchmarkSchedulerPerPacket drives it (a
// fake clock, every stream due at each call, 1,000 streams on one shard),
// each SRTP stream with its own context and key as each leg has. Three
// paths:
//
//   - discard: the packets go nowhere; the send path's own work only
//     (heap, header, frame copy, and for SRTP the AES-CM keystream and the
//     HMAC-SHA1 tag);
//   - socket: each packet written with one system call from a loopback
//     socket, as a leg with its own port;
//   - shared: a SharedPort, whose packets leave in sendmmsg batches on
//     Linux (encrypted in the batch's buffers).
//
// It reports ns/packet for both kinds, x-plain (SRTP over plain) and the
// allocations per packet of each.
func BenchmarkSRTPPerPacket(b *testing.B) {
	for _, path := range []string{"discard", "socket", "shared"} {
		b.Run(path, func(b *testing.B) {
			plain, plainAllocs := benchSendPath(b, path, false)
			secure, secureAllocs := benchSendPath(b, path, true)
			b.ReportMetric(plain, "plain-ns/packet")
			b.ReportMetric(secure, "srtp-ns/packet")
			b.ReportMetric(secure/plain, "x-plain")
			b.ReportMetric(plainAllocs, "plain-allocs/packet")
			b.ReportMetric(secureAllocs, "srtp-allocs/packet")
		})
	}
}

// benchSendPath sends b.N packets through path and returns the wall time
// and allocations per packet.
func benchSendPath(b *testing.B, path string, secure bool) (nsPerPacket, allocsPerPacket float64) {
	s := newScheduler(SchedulerOptions{Shards: 1})
	defer s.Close()
	var fake time.Duration
	s.now = func() time.Duration { return fake }
	sh := s.shards[0]

	var w PacketWriter = discardWriter{}
	dst := netip.MustParseAddrPort("127.0.0.1:9")
	switch path {
	case "socket":
		w, dst = benchSocket(b), addrOfConn(benchSocket(b))
	case "shared":
		port, err := NewSharedPort(benchSocket(b), SharedPortOptions{Scheduler: s})
		if err != nil {
			b.Fatal(err)
		}
		defer port.Close()
		w, dst = port, addrOfConn(benchSocket(b))
	}
	frames := testFrames(PCMU, 50)
	for range min(1000, b.N) {
		var protect *srtpOut
		if secure {
			var err error
			if protect, err = newSRTPOut(SuiteAESCM128SHA1_80, NewSRTPKey()); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.play(w, dst, frames, PCMU, 0, newTxState(time.Now()), false, protect); err != nil {
			b.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	for sh.packets.Load()+sh.writeErrors.Load() < uint64(b.N) {
		fake += FrameDuration
		sh.sendDue(context.Background())
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if errs := sh.writeErrors.Load(); errs > 0 {
		b.Fatalf("%d write errors", errs)
	}
	sent := float64(sh.packets.Load())
	return float64(elapsed.Nanoseconds()) / sent, float64(after.Mallocs-before.Mallocs) / sent
}

// BenchmarkSRTPTransform measures one leg's SRTP transform alone, hot in
// cache, per 160-byte PCMU packet (issue 17): pion's EncryptRTP against
// srtpSender (fast: AES-NI and SHA-NI; crypto: crypto/aes and crypto/hmac),
// both halves (encrypt, then decrypt with the receiving side's transform),
// and the two halves of it each way: the keystream (crypto/cipher's NewCTR,
// which allocates per IV; one block.Encrypt a block; four blocks at a time
// with AES-NI) and the tag (crypto/hmac, which restores its cached inner
// and outer states, the sender's path without SHA-NI; SHA-NI from the saved
// ipad and opad states).
func BenchmarkSRTPTransform(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 7))
	key := testSRTPKey(r)
	pkt := testRTP(r, 0, 0x11223344, 160, 0, -1)
	seq := uint16(0)
	next := func() []byte {
		seq++
		binary.BigEndian.PutUint16(pkt[2:], seq)
		return pkt
	}
	run := func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f()
			}
		})
	}

	pionOut, err := srtp.CreateContext(key[:srtpMasterKeyLen], key[srtpMasterKeyLen:], SuiteAESCM128SHA1_80.profile())
	if err != nil {
		b.Fatal(err)
	}
	var hdr rtp.Header
	run("pion", func() { _, _ = pionOut.EncryptRTP(pkt, next(), &hdr) })
	fast, err := newSRTPSender(SuiteAESCM128SHA1_80, key)
	if err != nil {
		b.Fatal(err)
	}
	run("fast", func() { _, _ = fast.protect(next()) })
	master, err := aes.NewCipher(key[:srtpMasterKeyLen])
	if err != nil {
		b.Fatal(err)
	}
	var enc [srtpMasterKeyLen]byte
	var auth [srtpAuthKeyLen]byte
	srtpKDF(master, key[srtpMasterKeyLen:], srtpLabelEncryption, enc[:])
	srtpKDF(master, key[srtpMasterKeyLen:], srtpLabelAuth, auth[:])
	slow, err := newSRTPSender(SuiteAESCM128SHA1_80, key)
	if err != nil {
		b.Fatal(err)
	}
	if err := slow.setSlow(enc[:], auth[:]); err != nil {
		b.Fatal(err)
	}
	slow.fastAES, slow.fastSHA = false, false
	run("crypto", func() { _, _ = slow.protect(next()) })

	payload := pkt[rtpHeaderSize:]
	var iv [aes.BlockSize]byte
	run("keystream-newctr", func() { cipher.NewCTR(slow.slow.block, iv[:]).XORKeyStream(payload, payload) })
	run("keystream-blocks", func() { slow.slow.xorKeyStream(payload, &iv) })
	if fast.fastAES {
		run("keystream-aesni", func() { fast.xorKeyStream(payload, &iv) })
	}
	// Both halves, as a relayed packet between two SRTP legs costs:
	// encrypted, then decrypted by the receiving side (fresh senders,
	// whose rollover counter starts at 0 as the receivers' do).
	pionOut, err = srtp.CreateContext(key[:srtpMasterKeyLen], key[srtpMasterKeyLen:], SuiteAESCM128SHA1_80.profile())
	if err != nil {
		b.Fatal(err)
	}
	pionIn, err := srtp.CreateContext(key[:srtpMasterKeyLen], key[srtpMasterKeyLen:], SuiteAESCM128SHA1_80.profile(),
		srtp.SRTPReplayProtection(srtpReplayWindow))
	if err != nil {
		b.Fatal(err)
	}
	var inHdr rtp.Header
	run("roundtrip-pion", func() {
		out, _ := pionOut.EncryptRTP(pkt, next(), &hdr)
		if _, err := pionIn.DecryptRTP(out, out, &inHdr); err != nil {
			b.Fatal(err)
		}
	})
	if fast, err = newSRTPSender(SuiteAESCM128SHA1_80, key); err != nil {
		b.Fatal(err)
	}
	fastIn, err := newSRTPReceiver(SuiteAESCM128SHA1_80, key, nil, srtpReplayWindow)
	if err != nil {
		b.Fatal(err)
	}
	run("roundtrip-fast", func() {
		out, _ := fast.protect(next())
		if _, err := fastIn.unprotect(out); err != nil {
			b.Fatal(err)
		}
	})

	msg := pkt[:len(pkt)+srtpROCLen]
	run("tag-hmac", func() { _ = slow.slow.mac(msg) })
	if fast.fastSHA {
		var tag [10]byte
		run("tag-shani", func() { fast.mac(msg, tag[:]) })
	}
}

// BenchmarkSRTPSetup measures what a leg's SRTP keys cost to set up, both
// directions (newSRTPOut and newSRTPIn, as NewEndpoint and SetSRTP make
// them): key derivation, and the CPUID asking for the SHA extensions once
// per direction (a VM exit on a virtual machine).
func BenchmarkSRTPSetup(b *testing.B) {
	keys := &SRTPKeys{Suite: SuiteAESCM128SHA1_80, Local: testSRTPKey(rand.New(rand.NewPCG(3, 9))), Remote: testSRTPKey(rand.New(rand.NewPCG(4, 9)))}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := newSRTPOut(keys.Suite, keys.Local); err != nil {
			b.Fatal(err)
		}
		if _, err := newSRTPIn(keys); err != nil {
			b.Fatal(err)
		}
	}
}
