package parkflags

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync/atomic"
)

// TLSFlags are SIP over TLS: where, with which certificate, and whose
// certificates peers must show (mutual TLS, as Lync's Call Park Service).
type TLSFlags struct {
	Listen, Cert, Key, ClientCA string
}

// RegisterTLS defines -tls-listen, -tls-cert, -tls-key and -tls-client-ca.
func RegisterTLS(fs *flag.FlagSet) *TLSFlags {
	f := new(TLSFlags)
	fs.StringVar(&f.Listen, "tls-listen", "", "serve SIP over TLS on this `address` too (e.g. 127.0.0.1:5061); needs -tls-cert and -tls-key; off when empty")
	fs.StringVar(&f.Cert, "tls-cert", "", "the server's certificate chain, a PEM `file`; SIGHUP reads it again")
	fs.StringVar(&f.Key, "tls-key", "", "the private key of -tls-cert, a PEM `file`")
	fs.StringVar(&f.ClientCA, "tls-client-ca", "", "mutual TLS: serve only TLS peers whose certificate this CA (a PEM `file`) signed, and trust it for the TLS peers the server calls; empty: any TLS client, the system's roots")
	return f
}

// TLSSettings are the checked TLS flags.
type TLSSettings struct {
	Listen string      // empty: no TLS
	Config *tls.Config // the server's and its calls' configuration
	flags  TLSFlags
	pair   *atomic.Pointer[tls.Certificate]
	mutual bool
}

// Enabled reports whether -tls-listen was given.
func (s TLSSettings) Enabled() bool { return s.Listen != "" }

// Resolve checks the TLS flags and loads the certificate.
func (f *TLSFlags) Resolve() (TLSSettings, error) {
	s := TLSSettings{Listen: f.Listen, flags: *f}
	if f.Listen == "" {
		if f.Cert != "" || f.Key != "" || f.ClientCA != "" {
			return s, errors.New("-tls-cert, -tls-key, -tls-client-ca: set -tls-listen too, the address to serve TLS on")
		}
		return s, nil
	}
	if _, err := netip.ParseAddrPort(f.Listen); err != nil {
		return s, fmt.Errorf("-tls-listen %q: want IP:port, such as 127.0.0.1:5061", f.Listen)
	}
	if f.Cert == "" || f.Key == "" {
		return s, errors.New("-tls-listen: needs -tls-cert and -tls-key")
	}
	pair, err := loadPair(f.Cert, f.Key)
	if err != nil {
		return s, err
	}
	s.pair = new(atomic.Pointer[tls.Certificate])
	s.pair.Store(pair)
	s.Config = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.pair.Load(), nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.pair.Load(), nil
		},
	}
	if f.ClientCA != "" {
		pool, err := readCAPool("-tls-client-ca", f.ClientCA)
		if err != nil {
			return s, err
		}
		s.Config.ClientAuth, s.Config.ClientCAs, s.Config.RootCAs = tls.RequireAndVerifyClientCert, pool, pool
		s.mutual = true
	}
	return s, nil
}

// readCAPool reads the PEM certificates of the file that flag names into a
// pool of roots.
func readCAPool(flag, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flag, path)
	}
	return pool, nil
}

// loadPair reads and checks a certificate and its key.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert %s, -tls-key %s: %w", certFile, keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("-tls-cert %s: %w", certFile, err)
		}
	}
	return &pair, nil
}

// readPair reads -tls-cert and -tls-key again, for a reload: nil, nil
// without TLS.
func (s TLSSettings) readPair() (*tls.Certificate, error) {
	if s.pair == nil {
		return nil, nil
	}
	return loadPair(s.flags.Cert, s.flags.Key)
}

// usePair puts a pair read by readPair in place, reporting whether it
// differs: connections made from now on get it, those open keep theirs,
// so no call drops.
func (s TLSSettings) usePair(pair *tls.Certificate) bool {
	if pair == nil || bytes.Equal(s.pair.Load().Certificate[0], pair.Certificate[0]) {
		return false
	}
	s.pair.Store(pair)
	return true
}

// Print writes the TLS settings for -check.
func (s TLSSettings) Print(w io.Writer) {
	if !s.Enabled() {
		fmt.Fprintf(w, "tls         (off)\n")
		return
	}
	leaf := s.pair.Load().Leaf
	mutual := "any client"
	if s.mutual {
		mutual = "clients with a certificate from " + s.flags.ClientCA
	}
	fmt.Fprintf(w, "tls         %s (%s, until %s; %s)\n", s.Listen, leaf.Subject.CommonName, leaf.NotAfter.Format("2006-01-02"), mutual)
}
