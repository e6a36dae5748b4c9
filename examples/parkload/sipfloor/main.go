//go:build unix

// Command sipfloor measures what sipgo's server side costs per call on this
// machine, against the same work done without it, to tell how much of the
// park server's CPU per cycle (issue 16, goal 2) a lighter SIP layer could
// save. It answers SIPp's built-in UAC scenario (INVITE → 200 with SDP →
// ACK → BYE → 200: three requests in, two responses out) in one of three
// ways, and prints its own CPU time per call:
//
//   - sipgo: a sipgo server (transport, transaction layer, a goroutine per
//     message), as the park server uses it;
//   - raw: the same parser and response builders of sipgo, called from the
//     one goroutine that reads the socket: no transactions, no goroutines;
//   - rawgo: raw, with a goroutine per message (what the goroutines cost
//     apart from the transactions).
//
// Nothing of this repository runs: the figures are sipgo's and Go's on this
// machine (BENCHMARKS.md, issue 16, goal 2). SIPp is Debian's sip-tester.
//
//	go run ./examples/parkload/sipfloor -mode sipgo -calls 30000 -rate 1000
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// answerSDP is the responder's answer to SIPp's PCMU offer.
const answerSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

func main() {
	mode := flag.String("mode", "sipgo", "who answers: sipgo, raw or rawgo")
	calls := flag.Int("calls", 30000, "calls SIPp places")
	rate := flag.Int("rate", 1000, "calls per second")
	listen := flag.String("listen", "127.0.0.1:5190", "the responder's UDP `address`")
	flag.Parse()
	if err := run(*mode, *calls, *rate, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "sipfloor:", err)
		os.Exit(1)
	}
}

func run(mode string, calls, rate int, listen string) error {
	if calls < 1 || rate < 1 {
		return errors.New("-calls and -rate: want at least 1")
	}
	sipp, err := exec.LookPath("sipp")
	if err != nil {
		return errors.New("needs sipp (Debian package sip-tester)")
	}
	conn, err := net.ListenPacket("udp", listen)
	if err != nil {
		return err
	}
	defer conn.Close()
	switch mode {
	case "sipgo":
		stop, err := serveSipgo(conn)
		if err != nil {
			return err
		}
		defer stop()
	case "raw", "rawgo":
		go serveRaw(conn, mode == "rawgo")
	default:
		return fmt.Errorf("-mode %q: want sipgo, raw or rawgo", mode)
	}

	at := conn.LocalAddr().(*net.UDPAddr)
	cmd := exec.Command(sipp, "-sn", "uac", at.String(), "-i", at.IP.String(), "-p", fmt.Sprint(at.Port+11),
		"-r", fmt.Sprint(rate), "-m", fmt.Sprint(calls), "-nostdin", "-timeout", fmt.Sprint(calls/rate+30)+"s")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	before, start := cpuTime(), time.Now()
	runErr := cmd.Run()
	used, took := cpuTime()-before, time.Since(start)

	ok, failed := sippCount(out.Bytes(), "Successful call"), sippCount(out.Bytes(), "Failed call")
	fmt.Printf("%s: %d calls in %.1f s, %d successful, %d failed; responder CPU %.0f µs per call (%.2f of a core)\n",
		mode, calls, took.Seconds(), ok, failed, float64(used.Microseconds())/float64(calls), used.Seconds()/took.Seconds())
	if ok != calls {
		return fmt.Errorf("SIPp: %d of %d calls succeeded (%v)", ok, calls, runErr)
	}
	return nil
}

// serveSipgo answers with a sipgo server, as the park server is built.
func serveSipgo(conn net.PacketConn) (func(), error) {
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(slog.New(slog.DiscardHandler))))
	if err != nil {
		return nil, err
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, err
	}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewSDPResponseFromRequest(req, []byte(answerSDP)))
	})
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	go srv.ServeUDP(conn)
	return func() { _ = ua.Close() }, nil
}

// serveRaw answers from the reading goroutine (or, with perMessage, from a
// goroutine per message) with sipgo's parser and response builders only.
func serveRaw(conn net.PacketConn, perMessage bool) {
	p := sip.NewParser()
	for {
		buf := make([]byte, 2048)
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if perMessage {
			go answerRaw(p, conn, buf[:n], from)
			continue
		}
		answerRaw(p, conn, buf[:n], from)
	}
}

func answerRaw(p *sip.Parser, conn net.PacketConn, data []byte, from net.Addr) {
	msg, err := p.ParseSIP(data)
	if err != nil {
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return
	}
	var res *sip.Response
	switch req.Method {
	case sip.INVITE:
		res = sip.NewSDPResponseFromRequest(req, []byte(answerSDP))
	case sip.BYE:
		res = sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	default:
		return // the ACK
	}
	if to := res.To(); to != nil {
		if _, ok := to.Params.Get("tag"); !ok {
			to.Params.Add("tag", "sipfloor")
		}
	}
	_, _ = conn.WriteTo([]byte(res.String()), from)
}

// cpuTime is this process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sippCount reads a counter's cumulative column from SIPp's last screen
// ("Successful call   |   0   |   30000").
func sippCount(out []byte, name string) int {
	re := regexp.MustCompile(regexp.QuoteMeta(name) + `\s*\|\s*\d+\s*\|\s*(\d+)`)
	all := re.FindAllSubmatch(out, -1)
	if len(all) == 0 {
		return -1
	}
	var n int
	fmt.Sscan(string(all[len(all)-1][1]), &n)
	return n
}
