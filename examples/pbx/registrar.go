package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The registrar's expiry defaults (RFC 3261 §10.2.1.1 suggests 3600 s; 60 s
// is the floor §10.3 step 5 recommends for phones that refresh too eagerly).
const (
	DefaultRegisterExpiry = 3600 * time.Second
	DefaultMinExpiry      = 60 * time.Second
	DefaultMaxExpiry      = 7200 * time.Second
)

// maxContactsPerExtension bounds the bindings of one extension, so that a
// phone inventing a new Contact on every REGISTER cannot grow memory without
// bound. A desk phone, a softphone and a mobile app fit with room to spare.
const maxContactsPerExtension = 10

// Binding is one registered contact of an extension (RFC 3261 §10): where
// the PBX sends the extension's calls.
type Binding struct {
	Contact   sip.Uri   // the Contact URI as the phone wrote it
	Transport string    // "UDP" or "TCP", as the REGISTER arrived
	Source    string    // the REGISTER's source address, host:port
	Expires   time.Time // when the binding lapses unless refreshed
	CallID    string    // the REGISTER's Call-ID ...
	CSeq      uint32    // ... and CSeq, to refuse out-of-order updates (§10.3 step 7)
}

// RegistrarOptions tunes a Registrar; the zero value of each field means its
// default.
type RegistrarOptions struct {
	// DefaultExpiry is granted to a contact that asks for none; zero means
	// 3600 s.
	DefaultExpiry time.Duration
	// MinExpiry is the shortest expiry accepted: shorter ones (except 0,
	// which removes) get 423 Interval Too Brief; zero means 60 s.
	MinExpiry time.Duration
	// MaxExpiry caps longer requests; zero means 7200 s.
	MaxExpiry time.Duration
	// Logger gets a line per binding added or removed; nil keeps the
	// registrar silent.
	Logger *slog.Logger
}

// Registrar serves REGISTER (RFC 3261 §10) for the extensions of a Users
// directory and answers where each can be reached. Bindings are kept in
// memory; expired ones are filtered out on every access, so no goroutine
// runs and there is nothing to close. It is safe for concurrent use.
type Registrar struct {
	users                               *Users
	auth                                *Authenticator
	defaultExpiry, minExpiry, maxExpiry time.Duration
	log                                 *slog.Logger

	mu       sync.Mutex
	bindings map[string][]registration // by extension, live or lapsed
}

// registration is a Binding with when it was last registered, to list the
// newest first.
type registration struct {
	Binding
	updated time.Time
}

// NewRegistrar returns a registrar for users. auth may be nil, to accept
// every REGISTER for an existing extension without asking who sends it.
// Options out of order are put in order rather than refused: a MaxExpiry
// below MinExpiry is raised to it, and DefaultExpiry is brought within the
// two.
func NewRegistrar(users *Users, auth *Authenticator, opts RegistrarOptions) *Registrar {
	r := &Registrar{
		users:         users,
		auth:          auth,
		defaultExpiry: opts.DefaultExpiry,
		minExpiry:     opts.MinExpiry,
		maxExpiry:     opts.MaxExpiry,
		log:           opts.Logger,
		bindings:      make(map[string][]registration),
	}
	if r.defaultExpiry <= 0 {
		r.defaultExpiry = DefaultRegisterExpiry
	}
	if r.minExpiry <= 0 {
		r.minExpiry = DefaultMinExpiry
	}
	if r.maxExpiry <= 0 {
		r.maxExpiry = DefaultMaxExpiry
	}
	r.maxExpiry = max(r.maxExpiry, r.minExpiry)
	r.defaultExpiry = min(max(r.defaultExpiry, r.minExpiry), r.maxExpiry)
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// registerUpdate is what a REGISTER asks for, read before anything changes.
type registerUpdate struct {
	wildcard bool            // Contact: * with Expires: 0, remove all
	contacts []contactUpdate // in request order; empty for a query
}

// contactUpdate is one Contact of a REGISTER with the expiry it asked for.
type contactUpdate struct {
	uri     sip.Uri
	expires time.Duration // 0 removes the binding
}

// errExpiryTooBrief marks a REGISTER to answer 423.
var errExpiryTooBrief = errors.New("expiry below the minimum")

// ServeRegister handles a REGISTER: a sipgo.RequestHandler for
// Server.OnRegister. The To user is the extension (404 if not in the
// directory); the sender must authenticate as that extension (403
// otherwise). Each Contact's expires parameter, else the Expires header,
// else DefaultExpiry, sets its expiry: 0 removes the contact, a value below
// MinExpiry is answered 423 with Min-Expires, a value above MaxExpiry is
// capped. Contact: * with Expires: 0 removes them all. A REGISTER without
// Contact is a query. The 200 OK lists every current contact with its
// remaining expires. The request is applied whole or not at all: an update
// with the Call-ID of an existing binding and a CSeq not above it is out of
// order and answered 500 (§10.3 step 7).
func (r *Registrar) ServeRegister(req *sip.Request, tx sip.ServerTransaction) {
	to := req.To()
	if to == nil || req.CallID() == nil || req.CSeq() == nil {
		r.reject(req, tx, sip.StatusBadRequest, "Bad Request", "REGISTER lacks To, Call-ID or CSeq")
		return
	}
	ext := to.Address.User
	if !r.users.Exists(ext) {
		r.log.Info("register: unknown extension", "ext", ext, "source", req.Source())
		r.reject(req, tx, sip.StatusNotFound, "Not Found", "no extension "+ext)
		return
	}
	if r.auth != nil {
		user, ok := r.auth.Authenticate(req, tx)
		if !ok {
			return
		}
		if user != ext {
			r.log.Info("register: refused, user registers another extension", "user", user, "ext", ext, "source", req.Source())
			r.reject(req, tx, sip.StatusForbidden, "Forbidden", user+" may not register "+ext)
			return
		}
	}
	update, err := r.readUpdate(req)
	if errors.Is(err, errExpiryTooBrief) {
		res := sip.NewResponseFromRequest(req, sip.StatusIntervalToBrief, "Interval Too Brief", nil)
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.FormatInt(ceilSeconds(r.minExpiry), 10)))
		r.send(tx, res)
		return
	}
	if err != nil {
		r.log.Info("register: bad request", "ext", ext, "source", req.Source(), "error", err)
		r.reject(req, tx, sip.StatusBadRequest, "Bad Request", err.Error())
		return
	}

	now := time.Now()
	r.mu.Lock()
	current, changes, refused := r.applyLocked(ext, update, req, now)
	r.mu.Unlock()
	if refused != nil {
		r.log.Info("register: refused", "ext", ext, "source", req.Source(), "status", refused.code, "why", refused.why)
		r.reject(req, tx, refused.code, refused.reason, refused.why)
		return
	}
	for _, c := range changes {
		r.log.Info(c.what, "ext", ext, "contact", c.contact, "expires", c.expires, "source", req.Source(), "transport", req.Transport())
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	for _, b := range current {
		c := &sip.ContactHeader{Address: *b.Contact.Clone(), Params: sip.NewParams()}
		c.Params.Add("expires", strconv.FormatInt(ceilSeconds(b.Expires.Sub(now)), 10))
		res.AppendHeader(c)
	}
	r.send(tx, res)
}

// readUpdate reads the Contacts and expiries of a REGISTER.
func (r *Registrar) readUpdate(req *sip.Request) (registerUpdate, error) {
	var (
		u            registerUpdate
		headerExpiry *time.Duration
	)
	if h := req.GetHeader("Expires"); h != nil {
		d, err := parseExpiry(h.Value())
		if err != nil {
			return u, fmt.Errorf("Expires header: %w", err)
		}
		headerExpiry = &d
	}
	contacts := req.GetHeaders("Contact")
	for i, h := range contacts {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			return u, fmt.Errorf("Contact %d: unparsable %q", i+1, h.Value())
		}
		if c.Address.Wildcard {
			// §10.3 step 6: "*" only alone and only to remove everything.
			if len(contacts) != 1 || headerExpiry == nil || *headerExpiry != 0 {
				return u, errors.New("Contact: * needs to be the only Contact, with Expires: 0")
			}
			u.wildcard = true
			return u, nil
		}
		if s := strings.ToLower(c.Address.Scheme); (s != "sip" && s != "sips") || c.Address.Host == "" {
			return u, fmt.Errorf("Contact %d: %q is not a sip: URI with a host", i+1, c.Address.String())
		}
		expires := r.defaultExpiry
		if headerExpiry != nil {
			expires = *headerExpiry
		}
		if v, ok := paramValue(c.Params, "expires"); ok {
			d, err := parseExpiry(v)
			if err != nil {
				return u, fmt.Errorf("Contact %d expires parameter: %w", i+1, err)
			}
			expires = d
		}
		if expires != 0 && expires < r.minExpiry {
			return u, fmt.Errorf("Contact %d: %w", i+1, errExpiryTooBrief)
		}
		expires = min(expires, r.maxExpiry)
		u.contacts = append(u.contacts, contactUpdate{uri: *c.Address.Clone(), expires: expires})
	}
	return u, nil
}

// parseExpiry reads delta-seconds (RFC 3261 §25.1); a value past 32 bits is
// taken as the largest, as §20.19 allows.
func parseExpiry(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		var numErr *strconv.NumError
		if errors.As(err, &numErr) && errors.Is(numErr.Err, strconv.ErrRange) {
			return math.MaxUint32 * time.Second, nil
		}
		return 0, fmt.Errorf("%q is not a number of seconds", v)
	}
	return time.Duration(min(n, math.MaxUint32)) * time.Second, nil
}

// paramValue finds a header parameter by name, ignoring case as RFC 3261
// §7.3.1 says parameter names do.
func paramValue(params sip.HeaderParams, name string) (string, bool) {
	for _, kv := range params {
		if strings.EqualFold(kv.K, name) {
			return kv.V, true
		}
	}
	return "", false
}

// registerRefusal is a REGISTER refused after it was read: out of order,
// or too many contacts.
type registerRefusal struct {
	code   int
	reason string
	why    string // for the log and the Warning header
}

// bindingChange is a line for the log.
type bindingChange struct {
	what, contact string
	expires       time.Duration
}

// applyLocked applies update to ext's bindings, all or nothing, and returns
// them as they now are, newest first.
func (r *Registrar) applyLocked(ext string, update registerUpdate, req *sip.Request, now time.Time) ([]registration, []bindingChange, *registerRefusal) {
	callID, seq := req.CallID().Value(), req.CSeq().SeqNo
	list := slices.Clone(r.purgeLocked(ext, now))
	outOfOrder := func(b registration) *registerRefusal {
		if b.CallID == callID && seq <= b.CSeq {
			return &registerRefusal{
				code: sip.StatusInternalServerError, reason: "Server Internal Error",
				why: fmt.Sprintf("CSeq %d not above %d of the binding of %s with this Call-ID", seq, b.CSeq, b.Contact.String()),
			}
		}
		return nil
	}
	var changes []bindingChange
	if update.wildcard {
		for _, b := range list {
			if refused := outOfOrder(b); refused != nil {
				return nil, nil, refused
			}
			changes = append(changes, bindingChange{what: "unregistered", contact: b.Contact.String()})
		}
		list = nil
	}
	for _, c := range update.contacts {
		key := contactKey(&c.uri)
		i := slices.IndexFunc(list, func(b registration) bool { return contactKey(&b.Contact) == key })
		if i >= 0 {
			if refused := outOfOrder(list[i]); refused != nil {
				return nil, nil, refused
			}
		}
		if c.expires == 0 {
			if i >= 0 {
				list = slices.Delete(list, i, i+1)
				changes = append(changes, bindingChange{what: "unregistered", contact: c.uri.String()})
			}
			continue
		}
		b := registration{
			Binding: Binding{
				Contact: c.uri, Transport: req.Transport(), Source: req.Source(),
				Expires: now.Add(c.expires), CallID: callID, CSeq: seq,
			},
			updated: now,
		}
		if i >= 0 {
			list[i] = b
			changes = append(changes, bindingChange{what: "registration refreshed", contact: c.uri.String(), expires: c.expires})
		} else {
			list = append(list, b)
			changes = append(changes, bindingChange{what: "registered", contact: c.uri.String(), expires: c.expires})
		}
	}
	if len(list) > maxContactsPerExtension {
		return nil, nil, &registerRefusal{
			code: sip.StatusForbidden, reason: "Too Many Contacts",
			why: fmt.Sprintf("at most %d contacts per extension", maxContactsPerExtension),
		}
	}
	sortNewestFirst(list)
	if len(list) == 0 {
		delete(r.bindings, ext)
	} else {
		r.bindings[ext] = list
	}
	return slices.Clone(list), changes, nil
}

// contactKey is what makes two Contact URIs the same binding: RFC 3261
// §19.1.4 compares scheme and host without case, user and port exactly,
// and the transport, user, ttl, method and maddr parameters whenever either
// side has them. Other URI parameters are left out: phones add and drop
// them between refreshes.
func contactKey(u *sip.Uri) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(u.Scheme))
	b.WriteByte(':')
	b.WriteString(u.User)
	b.WriteByte('@')
	b.WriteString(strings.ToLower(u.Host))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(u.Port))
	for _, name := range []string{"transport", "user", "ttl", "method", "maddr"} {
		if v, ok := paramValue(u.UriParams, name); ok {
			b.WriteByte(';')
			b.WriteString(name)
			b.WriteByte('=')
			b.WriteString(strings.ToLower(v))
		}
	}
	return b.String()
}

// liveRegistrations filters out the lapsed bindings, in place.
func liveRegistrations(list []registration, now time.Time) []registration {
	return slices.DeleteFunc(list, func(b registration) bool { return !now.Before(b.Expires) })
}

func sortNewestFirst(list []registration) {
	slices.SortStableFunc(list, func(a, b registration) int {
		if c := b.updated.Compare(a.updated); c != 0 {
			return c
		}
		return b.Expires.Compare(a.Expires)
	})
}

// purgeLocked drops ext's lapsed bindings and returns the live ones.
func (r *Registrar) purgeLocked(ext string, now time.Time) []registration {
	list := liveRegistrations(r.bindings[ext], now)
	if len(list) == 0 {
		delete(r.bindings, ext)
		return nil
	}
	r.bindings[ext] = list
	return list
}

// Contacts returns ext's unexpired bindings, newest first; nil when there
// are none.
func (r *Registrar) Contacts(ext string) []Binding {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.purgeLocked(ext, now)
	if len(list) == 0 {
		return nil
	}
	out := make([]Binding, len(list))
	for i, b := range list {
		out[i] = b.Binding
		out[i].Contact = *b.Contact.Clone()
	}
	return out
}

// Extensions returns the extensions with at least one live binding, sorted.
func (r *Registrar) Extensions() []string {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	exts := make([]string, 0, len(r.bindings))
	for ext := range r.bindings {
		if len(r.purgeLocked(ext, now)) > 0 {
			exts = append(exts, ext)
		}
	}
	slices.Sort(exts)
	return exts
}

// ceilSeconds rounds d up to whole seconds, as Expires and Min-Expires
// carry: a binding granted 3600 s shows 3600, not 3599, a moment later.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// reject answers a final non-2xx with a Warning (RFC 3261 §20.43) saying
// why, so the phone's log tells the user more than the status code.
func (r *Registrar) reject(req *sip.Request, tx sip.ServerTransaction, code int, reason, why string) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	res.AppendHeader(sip.NewHeader("Warning", `399 callpark-pbx "`+strings.ReplaceAll(why, `"`, "'")+`"`))
	r.send(tx, res)
}

func (r *Registrar) send(tx sip.ServerTransaction, res *sip.Response) {
	if err := tx.Respond(res); err != nil {
		r.log.Debug("register: response not sent", "status", res.StatusCode, "error", err)
	}
}
