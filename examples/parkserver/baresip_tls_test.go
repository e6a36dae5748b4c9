package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/softphone"
	"github.com/callpark/callpark/internal/interop"
	"github.com/callpark/callpark/internal/tlstest"
)

// baresip over TLS parks at the built server's TLS port, hears the music,
// is retrieved by a baresip on plain UDP (audio both ways through the
// relay), and gets the BYE over TLS when the retriever hangs up.
func TestBaresipParksOverTLS(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "callpark test CA")
	certFile, keyFile := tlstest.WriteFiles(t, dir, ca.Issue(t, tlstest.Leaf{}))
	caFile := ca.WriteCA(t, dir)
	// No -tls-client-ca: the server cannot check the phone's certificate,
	// so its requests in the call (the retrieve's re-INVITE, the BYE) can
	// only reach the phone over the connection the phone opened.
	srv := startParkServer(t, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	line := srv.WaitLine(`msg="park server listening"`, 5*time.Second)
	tlsAddr := regexp.MustCompile(`tls=(\S+)`).FindStringSubmatch(line)[1]

	// baresip wants its certificate and key in one PEM file.
	phoneDir := t.TempDir()
	phoneCert, phoneKey := tlstest.WriteFiles(t, phoneDir, ca.Issue(t, tlstest.Leaf{}))
	certPEM, err := os.ReadFile(phoneCert)
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(phoneKey)
	require.NoError(t, err)
	bundle := filepath.Join(phoneDir, "phone.pem")
	require.NoError(t, os.WriteFile(bundle, append(certPEM, keyPEM...), 0o600))

	alice := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "alice", SIPPort: 31171, CtrlPort: 30171, RTPLow: 18400,
		TLSCert: bundle, TLSCA: caFile})
	carol := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "carol", SIPPort: 31175, CtrlPort: 30175, RTPLow: 18500})

	alice.Do("dial", "sip:700@"+tlsAddr+";transport=tls")
	line = srv.WaitLine("msg=parked", 15*time.Second, "party=sip:alice")
	require.Contains(t, line, "party=sip:alice@127.0.0.1:31172", "the party is alice at her TLS port")
	orbit := regexp.MustCompile(`orbit=(\S+)`).FindStringSubmatch(line)[1]
	ai := alice.WaitEvent(0, "CALL_ESTABLISHED", "700", 10*time.Second)
	softphone.WaitFor(t, 10*time.Second, "alice hears hold music", func() bool {
		rx, _ := alice.RTPCounts()
		return rx >= 50
	})

	carol.Do("dial", "sip:"+orbit+"@"+srv.Addr)
	carol.WaitEvent(0, "CALL_ESTABLISHED", orbit, 10*time.Second)
	srv.WaitLine("msg=retrieved", 10*time.Second, "orbit="+orbit, "retriever=sip:carol")
	aliceBefore, _ := alice.RTPCounts()
	softphone.WaitFor(t, 10*time.Second, "carol hears alice and alice hears carol", func() bool {
		carolRx, carolTx := carol.RTPCounts()
		aliceRx, _ := alice.RTPCounts()
		return carolRx >= 50 && carolTx >= 50 && aliceRx >= aliceBefore+50
	})
	carol.Do("hangup", "")
	alice.WaitEvent(ai, "CALL_CLOSED", "700", 10*time.Second)
}
