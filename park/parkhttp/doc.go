// Package parkhttp is the operator's side of a lot over HTTP: an admin API
// (the parked calls, the live event stream, recall and hang-up, the
// running configuration) and the live page that shows the orbit grid from
// it, embedded, with no build step.
//
// It exists so that whoever runs call park sees the lot as Lync's
// cmdlets and an attendant console showed it, whatever the SIP host: it
// needs only a *park.Lot, so a PBX vendor embedding the lot serves the same
// page as the park server. In a cluster the lot already spans every node,
// so the page at any node shows the whole lot; a recall or hang-up of a
// call held by another node is passed on to that node (Options.Peer).
//
// The paths, JSON forms and errors are in docs/OPERATOR.md. Access is for
// loopback clients only, unless Options.Token is set: then every request
// carries it, from anywhere. Metrics are not this package's job: a host
// hands its Prometheus handler in Options.Metrics to serve it behind the
// same access rule.
package parkhttp
