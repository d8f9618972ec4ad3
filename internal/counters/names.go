package counters

import (
	"strings"
	"time"
)

// Names the gateway's processes agree on: extproc reserves under them, the dispatcher
// settles under them, the admin API reads them.

// OrgSlot is the slot of an organization's counters. Every budget and key rate limit of one
// request belongs to its key's organization, so one atomic call covers them all.
func OrgSlot(org string) string { return "o:" + org }

// BudgetKey is the counter of a budget over a window.
func BudgetKey(budgetID string, w Window) string { return "b:" + budgetID + ":" + string(w) }

// LimitCounters appends the counters of a rate limit set under prefix ("k:vk_1" for a key,
// "p:openai" for a provider): rpm and tpm per UTC minute, rpd per UTC day, each blocking;
// a zero limit has no counter. tokens is what the request reserves against tpm. A counter's
// limit name ("rpm") is its key after the last ':'.
func LimitCounters(dst []Counter, prefix string, rpm, rpd, tpm, tokens int64) []Counter {
	add := func(name string, w Window, u Unit, limit, amount int64) {
		if limit > 0 {
			dst = append(dst, Counter{Key: prefix + ":" + name, Window: w, Unit: u, Limit: limit, Amount: amount, Block: true})
		}
	}
	add("rpm", WindowMinute, UnitRequests, rpm, 1)
	add("rpd", WindowDay, UnitRequests, rpd, 1)
	add("tpm", WindowMinute, UnitTokens, tpm, tokens)
	return dst
}

// LimitName is the limit a counter of LimitCounters stands for: "rpm", "rpd" or "tpm".
func LimitName(c Counter) string { return c.Key[strings.LastIndexByte(c.Key, ':')+1:] }

// RetryAfterSeconds is a denial's Retry-After in whole seconds: rounded up, at least 1.
func (a Admission) RetryAfterSeconds() int64 {
	return max(int64((a.RetryAfter+time.Second-1)/time.Second), 1)
}
