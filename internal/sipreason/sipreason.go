// Package sipreason holds the reason phrases callpark's SIP code writes,
// so that each is spelled once across the server, the engine, the test
// phone and the load tool.
package sipreason

// NoDialog is the reason phrase of 481 (RFC 3261 §21.4.19): a request
// inside a dialog, or a Replaces, that names none we know.
const NoDialog = "Call/Transaction Does Not Exist"
