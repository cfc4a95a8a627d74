// Package bank is a SIMULATED payment service provider (PSP). It is the one
// part of payonce that is not real, and it exists so the real parts can be
// shown surviving what real PSPs do to you.
//
// Like a real PSP it authorises, captures and refunds card payments, and
// every mutating call takes an idempotency key: the same key replays the
// first result, the same key with different parameters is refused. That is
// what lets payments heal the worst case of all, "the charge went through but
// the response was lost": the retry, sent with the same key, gets the
// original charge back instead of a second one.
//
// Unlike a real PSP it keeps its books in memory, exposes its whole ledger
// (so tests can count charges), and can be told to misbehave: add latency,
// fail before doing anything, process a request and then lose the response,
// or decline given cards. See Faults.
package bank
