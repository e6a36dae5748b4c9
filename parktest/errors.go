package parktest

import (
	"errors"
	"fmt"

	"github.com/emiago/sipgo/sip"
)

// Sentinel errors. Returned errors wrap one of them (test with errors.Is) and
// name the offending field or value.
var (
	// ErrInvalidOptions reports a PhoneOptions, CallOptions or AnswerPolicy
	// field that cannot work: an empty user, an unknown transport, a codec
	// other than PCMU or PCMA, a status code out of its range.
	ErrInvalidOptions = errors.New("parktest: invalid options")
	// ErrBadTarget reports a target that is not a usable sip: URI, or whose
	// URI headers (?Replaces=...) cannot become request headers.
	ErrBadTarget = errors.New("parktest: bad target URI")
	// ErrPhoneClosed is returned by operations on a closed Phone, and by
	// waits that Close interrupted.
	ErrPhoneClosed = errors.New("parktest: phone closed")
	// ErrCallEnded is returned by in-dialog operations on a call that has
	// ended (BYE sent or received).
	ErrCallEnded = errors.New("parktest: call ended")
	// ErrBadSDP reports a peer's SDP the phone cannot use (see the wrapped
	// media error).
	ErrBadSDP = errors.New("parktest: unusable SDP")
	// ErrBadSipfrag reports a message/sipfrag body that is not a SIP status
	// line followed by header lines.
	ErrBadSipfrag = errors.New("parktest: malformed sipfrag")
	// ErrBadDialogInfo reports an application/dialog-info+xml body that does
	// not follow RFC 4235.
	ErrBadDialogInfo = errors.New("parktest: malformed dialog-info")
	// ErrTransaction reports a request that got no final response: a
	// transport error or a transaction timeout (see the wrapped sipgo error).
	ErrTransaction = errors.New("parktest: no final response")
)

// StatusError is a final non-2xx response to a request the phone sent: what a
// test expects when a park server answers 404, 486 or 489. Get it with
// errors.As.
type StatusError struct {
	Method   sip.RequestMethod // the request's method
	Target   string            // its Request-URI
	Code     int               // the response's status code
	Reason   string            // its reason phrase
	Response *sip.Response     // the response itself, for its headers
}

// Error names the request and the status line it got.
func (e *StatusError) Error() string {
	return fmt.Sprintf("parktest: %s %s answered %d %s", e.Method, e.Target, e.Code, e.Reason)
}

// statusError builds the StatusError for res, a final non-2xx response to req.
func statusError(req *sip.Request, res *sip.Response) *StatusError {
	return &StatusError{
		Method:   req.Method,
		Target:   req.Recipient.String(),
		Code:     res.StatusCode,
		Reason:   res.Reason,
		Response: res,
	}
}
