// Package fleet distributes the control plane's configuration from xds to every extproc
// and dispatcher replica, and keeps each replica serving while xds is down.
//
// # Protocol
//
// The transport is the real delta xDS protocol:
// envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources, served by
// this package's own [Server] (go-control-plane's snapshot cache cannot name custom types)
// on a gRPC server dedicated to the fleet. Each [config.Kind] is one resource type with the
// type URL "type.googleapis.com/sluice.config.v1.<kind>", e.g. ...v1.virtual_key. Each
// resource is a discovery Resource whose name is the document id, whose version is the
// document's store revision (decimal), and whose payload is a google.protobuf.BytesValue
// holding the document's JSON exactly as the store has it.
//
// A [Client] opens one stream and sends one DeltaDiscoveryRequest per kind it needs,
// subscribing to the wildcard "*" and, after a reconnect or a restart from its state file,
// listing every resource it holds in initial_resource_versions. For each wildcard
// subscription the server answers with the full state minus what the client already has at
// the same version, plus removed_resources for what the client holds that no longer exists;
// this first response is sent even when it is empty, so that the client knows its copy of
// that kind is complete. From then on, every committed store write (the server owns the
// store Watch) is pushed, in milliseconds, to every stream subscribed to its kind: the new
// document, or its id in removed_resources.
//
// Every response carries a fresh nonce and system_version_info (the store revision it
// reflects). The client ACKs each response (a request with response_nonce) after applying it,
// or NACKs it (error_detail set) when it is malformed, in which case nothing in it is applied.
// The server ignores ACKs and NACKs of nonces other than the last one it sent for that type,
// logs and counts NACKs, and does not resend a NACKed version: it treats the versions it
// sent as what the client holds, and only a newer revision of a document is sent again.
//
// # On-demand lookups
//
// A replica that meets something it has not seen (an unknown key hash) can ask for it with
// [Client.Lookup]: the client subscribes, on the same stream, to the name
// "index:<index name>:<key>" (for instance "index:vk_hash:3f2a…"). The server resolves it
// with Store.Index and answers with the document, named by its id and carrying the requested
// name in its aliases, or lists the requested name in removed_resources when it does not
// exist. Index names are queries, not subscriptions: the server answers once and forgets
// them, while the resolved id stays subscribed (it matters for kinds the client does not
// subscribe to with the wildcard).
//
// # Flow control
//
// Store events are fanned out without blocking: each stream has a bounded set of pending
// changes, coalesced by document, that only its own goroutine sends. A stream that falls
// more than 4096 documents behind, or a store Watch that reports a Resync, makes the
// stream do a full resync: re-List every subscribed kind and diff against the versions the
// client holds. One slow replica therefore never delays the others.
//
// # Bootstrap mode
//
// The client persists the last applied snapshot (with the resource versions) to
// ClientConfig.StateFile after every update, atomically (temporary file, fsync, rename,
// fsync of the directory). At start it delivers that snapshot before connecting, so a
// replica keeps serving, and restarts, while xds is down; when xds returns the client
// reconnects (capped exponential backoff with jitter) and resynchronises using
// initial_resource_versions, so only what changed meanwhile is sent.
//
// # Authentication
//
// With ServerConfig.Token set, a stream must carry the gRPC metadata
// "authorization: Bearer <token>" (compared in constant time) or it is refused with
// Unauthenticated. The token is never logged.
package fleet
