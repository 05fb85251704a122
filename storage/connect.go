package storage

import (
	"context"
	"time"
)

// ConnectState is one pending patient connection to a source: the SMART
// "state" of an authorization request the gateway sent the patient's
// browser to. Only the state's hash is stored.
type ConnectState struct {
	// Hash identifies the state (hex SHA-256 of the value sent out).
	Hash string
	// Patient ("amy") and Source ("city-clinic") say whose and where.
	Patient, Source string
	// Sealed holds the PKCE verifier and the app's return URL, sealed
	// under the state key.
	Sealed []byte
	// Expires is when the state stops being accepted.
	Expires time.Time
}

// SourceConnection is a patient's standing connection to a source: the
// tokens the source gave the gateway when the patient logged in there.
type SourceConnection struct {
	Patient, Source string
	// SourcePatient is the patient's id at the source (the token
	// response's "patient").
	SourcePatient string
	// Sealed holds the access and refresh tokens, sealed under the state
	// key; never stored in the clear.
	Sealed []byte
	// Connected is when the patient connected, Updated when the tokens
	// last changed.
	Connected, Updated time.Time
	// Broken is set when the tokens stopped working (a refresh was
	// refused): the patient must connect again.
	Broken bool
}

// Connections keeps pending and standing patient connections to sources,
// shared by every replica (sqlstore.Store implements it).
type Connections interface {
	// PutConnectState stores a pending connection and drops expired ones.
	PutConnectState(ctx context.Context, st ConnectState) error
	// TakeConnectState removes and returns the pending connection with
	// this hash: a state is used at most once, on any replica.
	// ErrNotFound when there is none.
	TakeConnectState(ctx context.Context, hash string) (*ConnectState, error)
	// SourceConnections lists a patient's connections, by source.
	SourceConnections(ctx context.Context, patient string) ([]SourceConnection, error)
	// UpdateSourceConnection runs fn on a patient's connection to a
	// source (nil when there is none) under a lock every replica
	// respects, and keeps what fn returns (nil deletes it). An error from
	// fn keeps the connection as it was.
	UpdateSourceConnection(ctx context.Context, patient, source string, fn func(old *SourceConnection) (*SourceConnection, error)) error
}
