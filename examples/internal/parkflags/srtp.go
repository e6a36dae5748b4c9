package parkflags

import (
	"flag"

	"github.com/callpark/callpark/media"
)

// SRTPFlag is -srtp: the policy for SRTP media (SDES keys in SDP, RFC
// 4568), which both programs hand to sipadapter (Config.SRTP,
// EngineConfig.SRTP). A value other than optional, required or off stops
// the program at parse time, naming the flag.
type SRTPFlag struct{ policy media.SRTPPolicy }

// RegisterSRTP defines -srtp on fs, default optional.
func RegisterSRTP(fs *flag.FlagSet) *SRTPFlag {
	f := &SRTPFlag{}
	fs.Var(f, "srtp", "SRTP media: `optional` (an RTP/SAVP offer with a=crypto gets encrypted music and relay, a plain one plain RTP), required (plain offers get 488, our own offers are SRTP) or off (RTP/SAVP offers get 488 unless they also offer plain RTP)")
	return f
}

// Policy returns the value for sipadapter.Config.SRTP or EngineConfig.SRTP.
func (f *SRTPFlag) Policy() media.SRTPPolicy { return f.policy }

// String returns the policy's name, for flag's usage and -check.
func (f *SRTPFlag) String() string {
	if f == nil {
		return media.SRTPOptional.String()
	}
	return f.policy.String()
}

// Set parses optional, required or off.
func (f *SRTPFlag) Set(s string) error {
	p, err := media.ParseSRTPPolicy(s)
	if err != nil {
		return err
	}
	f.policy = p
	return nil
}
