package fleet

import (
	"sync/atomic"
	"time"
)

// ServerStats are the server's counters since it started, for the metrics exporter.
type ServerStats struct {
	Streams      int64  // streams open now
	Pushes       uint64 // responses sent
	Resources    uint64 // resources sent in them
	Removals     uint64 // names sent in removed_resources
	Acks         uint64
	Nacks        uint64
	StaleAcks    uint64 // ACKs and NACKs of a superseded nonce (ignored)
	Resyncs      uint64 // full per-stream resyncs (store resync, queue overflow)
	Overflows    uint64 // per-stream queue overflows
	Lookups      uint64
	LookupMisses uint64
	AuthFailures uint64
	// Push lag: from the server learning of a change to the response carrying it being
	// handed to gRPC.
	PushLagCount uint64
	PushLagSum   time.Duration
	PushLagMax   time.Duration
	PushLagLast  time.Duration
}

type serverCounters struct {
	streams                                     atomic.Int64
	pushes, resources, removals                 atomic.Uint64
	acks, nacks, staleAcks, resyncs, overflows  atomic.Uint64
	lookups, lookupMisses, authFailures, lagCnt atomic.Uint64
	lagSum, lagMax, lagLast                     atomic.Int64
}

func (c *serverCounters) observeLag(d time.Duration) {
	c.lagCnt.Add(1)
	c.lagSum.Add(int64(d))
	c.lagLast.Store(int64(d))
	for {
		m := c.lagMax.Load()
		if int64(d) <= m || c.lagMax.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	c := &s.stats
	return ServerStats{
		Streams: c.streams.Load(), Pushes: c.pushes.Load(), Resources: c.resources.Load(),
		Removals: c.removals.Load(), Acks: c.acks.Load(), Nacks: c.nacks.Load(),
		StaleAcks: c.staleAcks.Load(), Resyncs: c.resyncs.Load(), Overflows: c.overflows.Load(),
		Lookups: c.lookups.Load(), LookupMisses: c.lookupMisses.Load(),
		AuthFailures: c.authFailures.Load(), PushLagCount: c.lagCnt.Load(),
		PushLagSum: time.Duration(c.lagSum.Load()), PushLagMax: time.Duration(c.lagMax.Load()),
		PushLagLast: time.Duration(c.lagLast.Load()),
	}
}

// ClientStats are a client's counters since it was created.
type ClientStats struct {
	Connects      uint64 // streams the server answered
	Disconnects   uint64 // streams lost (including refused ones)
	AuthFailures  uint64 // streams refused as unauthenticated
	Responses     uint64 // responses received
	Resources     uint64 // resources received in them
	Removals      uint64 // removals received
	Acks          uint64
	Nacks         uint64
	Snapshots     uint64 // OnSnapshot calls
	StateWrites   uint64
	StateErrors   uint64 // failed state-file writes
	Lookups       uint64
	LookupMisses  uint64
	LastUpdateLag time.Duration // last response's receive-to-OnSnapshot-return time
}

type clientCounters struct {
	connects, disconnects, authFailures          atomic.Uint64
	responses, resources, removals, acks, nacks  atomic.Uint64
	snapshots, stateWrites, stateErrors, lookups atomic.Uint64
	lookupMisses                                 atomic.Uint64
	lastUpdateLag                                atomic.Int64
}

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	k := &c.stats
	return ClientStats{
		Connects: k.connects.Load(), Disconnects: k.disconnects.Load(),
		AuthFailures: k.authFailures.Load(), Responses: k.responses.Load(),
		Resources: k.resources.Load(), Removals: k.removals.Load(), Acks: k.acks.Load(),
		Nacks: k.nacks.Load(), Snapshots: k.snapshots.Load(), StateWrites: k.stateWrites.Load(),
		StateErrors: k.stateErrors.Load(), Lookups: k.lookups.Load(),
		LookupMisses: k.lookupMisses.Load(), LastUpdateLag: time.Duration(k.lastUpdateLag.Load()),
	}
}
