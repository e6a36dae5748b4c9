package parkflags

import (
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
)

func TestSRTPFlag(t *testing.T) {
	parse := func(args ...string) (media.SRTPPolicy, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := RegisterSRTP(fs)
		err := fs.Parse(args)
		return f.Policy(), err
	}
	p, err := parse()
	require.NoError(t, err)
	require.Equal(t, media.SRTPOptional, p, "default")
	for _, want := range []media.SRTPPolicy{media.SRTPOptional, media.SRTPRequired, media.SRTPOff} {
		p, err := parse("-srtp", want.String())
		require.NoError(t, err)
		require.Equal(t, want, p)
	}
	_, err = parse("-srtp", "mandatory")
	require.ErrorContains(t, err, "-srtp")
	require.ErrorContains(t, err, "optional, required or off")
}
