package counters

// Names the gateway's processes agree on: extproc reserves under them, the dispatcher
// settles under them, the admin API reads them.

// OrgSlot is the slot of an organization's counters. Every budget and key rate limit of one
// request belongs to its key's organization, so one atomic call covers them all.
func OrgSlot(org string) string { return "o:" + org }

// BudgetKey is the counter of a budget over a window.
func BudgetKey(budgetID string, w Window) string { return "b:" + budgetID + ":" + string(w) }
