package config

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/sluice-gateway/sluice/internal/vkey"
)

// defaultOrg is the organization static keys without one belong to.
const defaultOrg = "default"

// Snapshot converts the static file format into the control plane's documents, so a
// gateway started from a file and one fed by the control plane run the same code: each key
// gets a routing policy listing its providers in file order, each tenant id its
// organization, team or project document, and each provider its credential by environment
// variable.
func (c *Config) Snapshot() (*Snapshot, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := &Snapshot{Resources: map[Kind]map[string]json.RawMessage{}}
	var firstErr error
	put := func(r Resource) {
		if err := r.Validate(); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s %s: %w", r.ResourceKind(), r.ResourceID(), err)
		}
		b, err := json.Marshal(r)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		docs := s.Resources[r.ResourceKind()]
		if docs == nil {
			docs = map[string]json.RawMessage{}
			s.Resources[r.ResourceKind()] = docs
		}
		docs[r.ResourceID()] = b
	}
	providerOrg := defaultOrg
	if len(c.Keys) > 0 && c.Keys[0].OrgID != "" {
		providerOrg = c.Keys[0].OrgID
	}
	put(&Organization{ID: providerOrg, Name: providerOrg})
	all := make([]string, 0, len(c.Providers))
	for i, p := range c.Providers {
		all = append(all, p.ID)
		put(&ModelProvider{ID: p.ID, Name: p.ID, Type: p.Type, BaseURL: p.BaseURL,
			CredentialsEnv: p.APIKeyEnv, Models: p.Models, FallbackPriority: i, Limits: p.Limits, Pricing: p.Pricing, Timeouts: p.Timeouts,
			Scope: Scope{Kind: ScopeOrg, ID: providerOrg}})
	}
	for i := range c.Guardrails {
		put(&c.Guardrails[i])
	}
	for _, k := range c.Keys {
		org := k.OrgID
		if org == "" {
			org = defaultOrg
		}
		put(&Organization{ID: org, Name: org})
		scope := Scope{Kind: ScopeOrg, ID: org}
		if k.TeamID != "" {
			put(&Team{ID: k.TeamID, OrgID: org, Name: k.TeamID})
			scope = Scope{Kind: ScopeTeam, ID: k.TeamID}
		}
		if k.ProjectID != "" {
			put(&Project{ID: k.ProjectID, OrgID: org, TeamID: k.TeamID, Name: k.ProjectID})
			scope = Scope{Kind: ScopeProject, ID: k.ProjectID}
		}
		if k.PrincipalID != "" {
			put(&Principal{ID: k.PrincipalID, OrgID: org, Name: k.PrincipalID})
		}
		chain := k.Providers
		if len(chain) == 0 {
			chain = all
		}
		name := k.Name
		if name == "" {
			name = k.ID
		}
		vk := &VirtualKey{ID: k.ID, Name: name, Scope: scope, PrincipalID: k.PrincipalID, Hash: k.Hash,
			DisplayPrefix: vkey.Prefix, Status: KeyActive,
			Config: KeyConfig{ModelAliases: k.ModelAliases, ModelsAllowed: k.ModelsAllowed, Guardrails: k.Guardrails,
				RateLimits: k.RateLimits, PolicyRules: k.PolicyRules, CacheMode: k.CacheMode, DefaultMaxTokens: k.DefaultMaxTokens,
				Fallback: k.Fallback}}
		if len(chain) > 0 {
			rp := &RoutingPolicy{ID: "rp_" + k.ID[len("vk_"):], Name: name + " chain", Scope: scope,
				Strategy: StrategyOrdered, Providers: chain}
			put(rp)
			vk.RoutingPolicyID = rp.ID
		}
		put(vk)
	}
	for i := range c.Projects {
		put(&c.Projects[i]) // after the keys' own: the full document wins
	}
	for i := range c.Budgets {
		put(&c.Budgets[i])
	}
	s.Version = "static-" + strconv.Itoa(len(c.Keys)) + "-" + strconv.Itoa(len(c.Providers)) + "-" + strconv.Itoa(len(c.Guardrails)) + "-" + strconv.Itoa(len(c.Projects)) + "-" + strconv.Itoa(len(c.Budgets))
	return s, firstErr
}
