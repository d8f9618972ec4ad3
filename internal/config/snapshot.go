package config

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Snapshot is the data plane's copy of the control plane's resources: what the fleet
// client receives over xDS, persists for bootstrap mode, and hands to extproc and the
// dispatcher. Documents are kept as the store's JSON so that a replica passes on exactly
// what the control plane wrote.
//
// A Snapshot is immutable once published: receivers must not modify it.
type Snapshot struct {
	// Version identifies the content (the control plane's store revision when it was built).
	Version string `json:"version"`
	// Resources holds every document by kind, then id.
	Resources map[Kind]map[string]json.RawMessage `json:"resources"`
}

// Resources is a Snapshot decoded into typed maps keyed by id.
type Resources struct {
	Organizations   map[string]*Organization
	Teams           map[string]*Team
	Projects        map[string]*Project
	Principals      map[string]*Principal
	Providers       map[string]*ModelProvider
	Keys            map[string]*VirtualKey
	RoutingPolicies map[string]*RoutingPolicy
	Budgets         map[string]*Budget
	Guardrails      map[string]*Guardrail
}

// Decode decodes every document. A document that does not decode or validate is reported,
// and left out, so one bad document cannot stop a replica from serving the rest.
func (s *Snapshot) Decode() (*Resources, error) {
	r := &Resources{
		Organizations: map[string]*Organization{}, Teams: map[string]*Team{},
		Projects: map[string]*Project{}, Principals: map[string]*Principal{},
		Providers: map[string]*ModelProvider{}, Keys: map[string]*VirtualKey{},
		RoutingPolicies: map[string]*RoutingPolicy{}, Budgets: map[string]*Budget{},
		Guardrails: map[string]*Guardrail{},
	}
	var errs []error
	for kind, docs := range s.Resources {
		for id, doc := range docs {
			res, err := DecodeResource(kind, doc)
			if err == nil {
				err = res.Validate()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", kind, id, err))
				continue
			}
			switch v := res.(type) {
			case *Organization:
				r.Organizations[id] = v
			case *Team:
				r.Teams[id] = v
			case *Project:
				r.Projects[id] = v
			case *Principal:
				r.Principals[id] = v
			case *ModelProvider:
				r.Providers[id] = v
			case *VirtualKey:
				r.Keys[id] = v
			case *RoutingPolicy:
				r.RoutingPolicies[id] = v
			case *Budget:
				r.Budgets[id] = v
			case *Guardrail:
				r.Guardrails[id] = v
			}
		}
	}
	return r, errors.Join(errs...)
}
