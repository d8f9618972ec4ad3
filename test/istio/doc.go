// Package istio validates what `sluice istio` renders against Istio's own CRD schemas and
// API types, offline. It is a separate module so that Kubernetes and Istio dependencies
// stay out of the gateway's module graph.
package istio
