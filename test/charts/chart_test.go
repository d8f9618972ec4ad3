package charts

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// variant is a documented way to install the chart: charts/sluice/ci/<name>-values.yaml.
type variant struct {
	name string
	args []string
}

// variants are the default values plus every file in charts/sluice/ci.
func variants(t *testing.T) []variant {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no variant files in ci/: %v", err)
	}
	vs := []variant{{name: "default"}}
	for _, f := range files {
		vs = append(vs, variant{name: strings.TrimSuffix(filepath.Base(f), "-values.yaml"), args: []string{"-f", f}})
	}
	return vs
}

func TestLint(t *testing.T) {
	for _, v := range variants(t) {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"lint", "--strict", chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, v.args...)
			if out, err := helm(t, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestVariants renders every variant, validates every manifest against the Kubernetes
// types, and asserts the chart's invariants on the result.
func TestVariants(t *testing.T) {
	for _, v := range variants(t) {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			docs, err := render(t, v.args...)
			if err != nil {
				t.Fatal(err)
			}
			r := index(t, docs)
			checkExposure(t, r)
			checkNetworkPolicies(t, r)
			checkSocket(t, r)
			checkWiring(t, r)
			checkProbes(t, r)
			checkSecurity(t, r)
			checkSecrets(t, r)
			checkNoSecretOutsideSecrets(t, r, nil)
			checkStore(t, r, v.name)
			checkCounters(t, r, "closed")
		})
	}
}

// rendered is one render, decoded and indexed.
type rendered struct {
	istio bool // mode: istio (standalone extproc, no Envoy)
	// gatewayPeer is the NetworkPolicy peer of the Istio gateway pods expected in mode istio
	// (the chart's defaults unless a test says otherwise).
	gatewayPeer networkingv1.NetworkPolicyPeer
	docs        []typed
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	workloads   map[string]*workload
	netpols     []*networkingv1.NetworkPolicy
	ingresses   []*networkingv1.Ingress
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
}

type workload struct {
	kind     string
	name     string
	replicas *int32
	selector *metav1.LabelSelector
	pod      *corev1.PodTemplateSpec
	claims   []string
}

func (w *workload) container(name string) *corev1.Container {
	for i := range w.pod.Spec.Containers {
		if w.pod.Spec.Containers[i].Name == name {
			return &w.pod.Spec.Containers[i]
		}
	}
	return nil
}

const fullname = releaseName + "-sluice"

func svcName(component string) string { return fullname + "-" + component }
func svcFQDN(component string) string {
	return svcName(component) + "." + namespace + ".svc.cluster.local"
}

func index(t *testing.T, docs []doc) *rendered {
	t.Helper()
	r := &rendered{services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, workloads: map[string]*workload{}}
	seen := map[string]bool{}
	for _, d := range docs {
		td, err := decodeStrict(d)
		if err != nil {
			t.Errorf("%s: %v", d, err)
			continue
		}
		for _, e := range validateObject(td) {
			t.Errorf("%s: %v", d, e)
		}
		key := d.Kind() + "/" + d.Name()
		if seen[key] {
			t.Errorf("%s rendered twice", key)
		}
		seen[key] = true
		r.docs = append(r.docs, td)
		switch o := td.obj.(type) {
		case *corev1.Service:
			r.services[o.Name] = o
		case *corev1.ConfigMap:
			r.configMaps[o.Name] = o
		case *corev1.Secret:
			r.secrets[o.Name] = o
		case *appsv1.Deployment:
			r.workloads[o.Name] = &workload{kind: "Deployment", name: o.Name, replicas: o.Spec.Replicas, selector: o.Spec.Selector, pod: &o.Spec.Template}
		case *appsv1.StatefulSet:
			w := &workload{kind: "StatefulSet", name: o.Name, replicas: o.Spec.Replicas, selector: o.Spec.Selector, pod: &o.Spec.Template}
			for _, c := range o.Spec.VolumeClaimTemplates {
				w.claims = append(w.claims, c.Name)
			}
			r.workloads[o.Name] = w
		case *networkingv1.NetworkPolicy:
			r.netpols = append(r.netpols, o)
		case *networkingv1.Ingress:
			r.ingresses = append(r.ingresses, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas = append(r.hpas, o)
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// mode: envoy renders the Envoy pods (with the extproc sidecar); mode: istio a standalone
	// extproc Deployment instead, and never both.
	gateway := "envoy"
	if r.workloads[svcName("extproc")] != nil {
		r.istio, gateway = true, "extproc"
		r.gatewayPeer = gatewayPeer("istio-system", map[string]string{"istio": "ingressgateway"})
		if r.workloads[svcName("envoy")] != nil {
			t.Fatalf("both an Envoy and a standalone extproc workload")
		}
	}
	for _, c := range []string{gateway, "xds", "dispatcher"} {
		if r.workloads[svcName(c)] == nil {
			t.Fatalf("no %s workload", c)
		}
		if r.services[svcName(c)] == nil {
			t.Fatalf("no %s Service", c)
		}
	}
	return r
}

// extproc is the workload running extproc: the Envoy pods (sidecar) or the standalone Deployment.
func (r *rendered) extproc() *workload {
	if r.istio {
		return r.workloads[svcName("extproc")]
	}
	return r.workloads[svcName("envoy")]
}

// podsOf returns the workloads whose pods sel selects (in the release namespace).
func (r *rendered) podsOf(sel *metav1.LabelSelector) []*workload {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil
	}
	var out []*workload
	for _, name := range sortedKeys(r.workloads) {
		if w := r.workloads[name]; s.Matches(labels.Set(w.pod.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

func (r *rendered) podsOfMap(sel map[string]string) []*workload {
	return r.podsOf(&metav1.LabelSelector{MatchLabels: sel})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func names(ws []*workload) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.name)
	}
	return out
}

// resolvePort finds the container port a Service/probe/policy port refers to in w.
func resolvePort(w *workload, port intstr.IntOrString) (*corev1.Container, int32, bool) {
	for i := range w.pod.Spec.Containers {
		c := &w.pod.Spec.Containers[i]
		for _, p := range c.Ports {
			if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return c, p.ContainerPort, true
			}
		}
	}
	return nil, 0, false
}

// flag returns the value of --name in args ("--name v" or "--name=v").
func flag(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("address %q: %v", addr, err)
		return 0
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Errorf("address %q: %v", addr, err)
	}
	return int32(n)
}

// checkExposure: only Envoy may be exposed. The dispatcher and xds Services are ClusterIP,
// and no Ingress routes to anything but Envoy.
func checkExposure(t *testing.T, r *rendered) {
	for name, s := range r.services {
		if name == svcName("envoy") {
			continue
		}
		if s.Spec.Type != corev1.ServiceTypeClusterIP || len(s.Spec.ExternalIPs) > 0 {
			t.Errorf("Service %s is %s (externalIPs %v): only Envoy may be exposed", name, s.Spec.Type, s.Spec.ExternalIPs)
		}
		for _, p := range s.Spec.Ports {
			if p.NodePort != 0 {
				t.Errorf("Service %s has a nodePort", name)
			}
		}
	}
	for _, ing := range r.ingresses {
		if b := ing.Spec.DefaultBackend; b != nil && (b.Service == nil || b.Service.Name != svcName("envoy")) {
			t.Errorf("Ingress %s default backend is not Envoy: %+v", ing.Name, b)
		}
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				if p.Backend.Service == nil || p.Backend.Service.Name != svcName("envoy") {
					t.Errorf("Ingress %s routes %s to %+v, not Envoy", ing.Name, p.Path, p.Backend)
					continue
				}
				if _, ok := r.services[svcName("envoy")]; !ok {
					t.Errorf("Ingress %s: no Envoy Service", ing.Name)
				}
				found := false
				for _, sp := range r.services[svcName("envoy")].Spec.Ports {
					if sp.Name == p.Backend.Service.Port.Name || (p.Backend.Service.Port.Number != 0 && sp.Port == p.Backend.Service.Port.Number) {
						found = true
					}
				}
				if !found {
					t.Errorf("Ingress %s: port %+v not on the Envoy Service", ing.Name, p.Backend.Service.Port)
				}
			}
		}
	}
}

// checkNetworkPolicies: when policies are rendered, only Envoy pods reach the dispatcher;
// only Envoy and dispatcher pods reach the xds fleet port and only Envoy the ADS port; the
// admin port only from the configured peers; Redis only from xds, extproc and the dispatcher.
func checkNetworkPolicies(t *testing.T, r *rendered) {
	if len(r.netpols) == 0 {
		if _, ok := r.services[svcName("dispatcher")]; ok {
			t.Logf("no NetworkPolicies rendered (networkPolicy.enabled=false)")
		}
		return
	}
	envoy, dispatcher, xds := r.extproc(), r.workloads[svcName("dispatcher")], r.workloads[svcName("xds")]
	// rulesFor returns, per target port number, the workloads allowed in by in-namespace pod
	// selectors, and whether any other kind of peer (or an empty from) admits more; peers
	// lists those other peers (namespace selectors, ipBlocks, pods outside the chart).
	type access struct {
		pods  map[string]bool
		other bool
		open  bool // an empty from: anyone
		peers []networkingv1.NetworkPolicyPeer
	}
	rulesFor := func(w *workload) (map[int32]*access, bool) {
		byPort := map[int32]*access{}
		selected := false
		for _, np := range r.netpols {
			if !slices.Contains(names(r.podsOf(&np.Spec.PodSelector)), w.name) {
				continue
			}
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				continue
			}
			selected = true
			for _, rule := range np.Spec.Ingress {
				var ports []int32
				if len(rule.Ports) == 0 {
					for _, c := range w.pod.Spec.Containers {
						for _, p := range c.Ports {
							ports = append(ports, p.ContainerPort)
						}
					}
				}
				for _, p := range rule.Ports {
					if p.Port == nil {
						t.Errorf("NetworkPolicy %s: a rule without a port admits every port", np.Name)
						continue
					}
					_, n, ok := resolvePort(w, *p.Port)
					if !ok {
						t.Errorf("NetworkPolicy %s: port %s is not a port of %s", np.Name, p.Port.String(), w.name)
						continue
					}
					ports = append(ports, n)
				}
				for _, n := range ports {
					a := byPort[n]
					if a == nil {
						a = &access{pods: map[string]bool{}}
						byPort[n] = a
					}
					if len(rule.From) == 0 {
						a.other, a.open = true, true
					}
					for _, peer := range rule.From {
						if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
							a.other = true
							a.peers = append(a.peers, peer)
							continue
						}
						for _, pw := range r.podsOf(peer.PodSelector) {
							a.pods[pw.name] = true
						}
						if len(r.podsOf(peer.PodSelector)) == 0 {
							a.other = true // pods outside the chart (e.g. the admin-client label)
							a.peers = append(a.peers, peer)
						}
					}
				}
			}
		}
		return byPort, selected
	}
	only := func(w *workload, port int32, want ...string) {
		byPort, selected := rulesFor(w)
		if !selected {
			t.Errorf("no NetworkPolicy selects %s", w.name)
			return
		}
		a := byPort[port]
		if a == nil {
			t.Errorf("%s port %d: no ingress rule", w.name, port)
			return
		}
		if a.other || !reflect.DeepEqual(sortedKeys(a.pods), want) {
			t.Errorf("%s port %d admits %v (other peers: %v), want only %v", w.name, port, sortedKeys(a.pods), a.other, want)
		}
	}
	// onlyGateway: mode istio, port of w admits the Istio gateway pods and nothing else.
	onlyGateway := func(w *workload, port int32) {
		byPort, selected := rulesFor(w)
		if !selected {
			t.Errorf("no NetworkPolicy selects %s", w.name)
			return
		}
		a := byPort[port]
		if a == nil {
			t.Errorf("%s port %d: no ingress rule", w.name, port)
			return
		}
		if a.open || len(a.pods) > 0 || !reflect.DeepEqual(a.peers, []networkingv1.NetworkPolicyPeer{r.gatewayPeer}) {
			t.Errorf("%s port %d admits pods %v, peers %+v (open: %v), want only the Istio gateway %+v", w.name, port, sortedKeys(a.pods), a.peers, a.open, r.gatewayPeer)
		}
	}
	// The dispatcher: every port only from Envoy (mode istio: from the Istio gateway).
	byPort, _ := rulesFor(dispatcher)
	for port := range byPort {
		if r.istio {
			onlyGateway(dispatcher, port)
		} else {
			only(dispatcher, port, envoy.name)
		}
	}
	if len(byPort) == 0 {
		t.Errorf("dispatcher: no ingress rules")
	}
	xc := xds.container("xds")
	fleet, _ := flag(xc.Args, "fleet-listen")
	ads, _ := flag(xc.Args, "ads-listen")
	admin, _ := flag(xc.Args, "admin-listen")
	only(xds, portOf(t, fleet), slices.Sorted(slices.Values([]string{envoy.name, dispatcher.name}))...)
	if r.istio {
		// No Envoy asks for ADS; extproc's gRPC port admits the gateway alone, and its
		// other ports (the metrics scrape) neither the gateway nor any pod of the chart.
		if xp, _ := rulesFor(xds); xp[portOf(t, ads)] != nil {
			t.Errorf("mode istio: the xds ADS port admits %v (peers %+v)", sortedKeys(xp[portOf(t, ads)].pods), xp[portOf(t, ads)].peers)
		}
		grpc, _ := flag(envoy.container("extproc").Args, "listen")
		onlyGateway(envoy, portOf(t, grpc))
		ep, _ := rulesFor(envoy)
		for port, a := range ep {
			if port == portOf(t, grpc) {
				continue
			}
			if a.open || len(a.pods) > 0 || slices.ContainsFunc(a.peers, func(p networkingv1.NetworkPolicyPeer) bool { return reflect.DeepEqual(p, r.gatewayPeer) }) {
				t.Errorf("extproc port %d admits pods %v, peers %+v (open %v): only the metrics scrape may", port, sortedKeys(a.pods), a.peers, a.open)
			}
		}
	} else {
		only(xds, portOf(t, ads), envoy.name)
	}
	xdsPorts, _ := rulesFor(xds)
	if a := xdsPorts[portOf(t, admin)]; a != nil && (a.pods[envoy.name] || a.pods[dispatcher.name]) {
		t.Errorf("xds admin port admits the gateway pods: %v", sortedKeys(a.pods))
	}
	// Redis: xds (its config store), extproc and the dispatcher (the budget and rate-limit
	// counters), and nothing else.
	if redis := r.workloads[svcName("redis")]; redis != nil {
		only(redis, 6379, slices.Sorted(slices.Values([]string{xds.name, envoy.name, dispatcher.name}))...)
	}
}

// checkSocket: Envoy and extproc share the socket's emptyDir, and the addresses agree.
func checkSocket(t *testing.T, r *rendered) {
	if r.istio {
		// Mode istio: no socket; extproc listens on TCP and xds names its Service (checkWiring).
		w := r.extproc()
		for _, v := range w.pod.Spec.Volumes {
			if v.Name == "extproc-socket" {
				t.Errorf("mode istio: %s mounts the socket volume", w.name)
			}
		}
		if listen, _ := flag(w.container("extproc").Args, "listen"); strings.HasPrefix(listen, "unix:") {
			t.Errorf("mode istio: extproc --listen %q, want host:port", listen)
		}
		return
	}
	w := r.workloads[svcName("envoy")]
	envoy, extproc := w.container("envoy"), w.container("extproc")
	if envoy == nil || extproc == nil {
		t.Fatalf("Envoy pod containers: want envoy and extproc")
	}
	listen, ok := flag(extproc.Args, "listen")
	sock, isUnix := strings.CutPrefix(listen, "unix:")
	if !ok || !isUnix {
		t.Fatalf("extproc --listen %q: want unix:/path", listen)
	}
	dir := filepath.Dir(sock)
	mountOf := func(c *corev1.Container) string {
		for _, m := range c.VolumeMounts {
			if m.MountPath == dir {
				return m.Name
			}
		}
		return ""
	}
	ve, vx := mountOf(envoy), mountOf(extproc)
	if ve == "" || ve != vx {
		t.Fatalf("socket dir %s: envoy mounts %q, extproc mounts %q; want one shared volume", dir, ve, vx)
	}
	for _, v := range w.pod.Spec.Volumes {
		if v.Name == ve && v.EmptyDir == nil {
			t.Errorf("socket volume %s is not an emptyDir", ve)
		}
	}
	xds := r.workloads[svcName("xds")].container("xds")
	if got, _ := flag(xds.Args, "extproc-addr"); got != listen {
		t.Errorf("xds --extproc-addr %q, extproc listens on %q", got, listen)
	}
}

// checkWiring: every address one process is given resolves, through a Service, to a port
// the target container listens on.
func checkWiring(t *testing.T, r *rendered) {
	xdsW, dispW, envoyW := r.workloads[svcName("xds")], r.workloads[svcName("dispatcher")], r.workloads[svcName("envoy")]
	xds, disp, extproc := xdsW.container("xds"), dispW.container("dispatcher"), r.extproc().container("extproc")
	// viaService checks that addr is component's Service FQDN and a port of it whose target
	// is the port the workload's container listens on (listen).
	viaService := func(what, addr, component string, w *workload, listen string) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != svcFQDN(component) {
			t.Errorf("%s: %q, want host %s", what, addr, svcFQDN(component))
			return
		}
		svc := r.services[svcName(component)]
		want := portOf(t, listen)
		for _, p := range svc.Spec.Ports {
			if p.Port != portOf(t, addr) {
				continue
			}
			if _, n, ok := resolvePort(w, p.TargetPort); !ok || n != want {
				t.Errorf("%s: Service %s port %d targets %s (container port %d), the process listens on %d", what, svc.Name, p.Port, p.TargetPort.String(), n, want)
			}
			return
		}
		t.Errorf("%s: Service %s has no port %d", what, svc.Name, portOf(t, addr))
	}
	fleet, _ := flag(xds.Args, "fleet-listen")
	for what, args := range map[string][]string{"extproc --xds": extproc.Args, "dispatcher --xds": disp.Args} {
		addr, _ := flag(args, "xds")
		viaService(what, addr, "xds", xdsW, fleet)
	}
	dl, _ := flag(disp.Args, "listen")
	da, _ := flag(xds.Args, "dispatcher-addr")
	viaService("xds --dispatcher-addr", da, "dispatcher", dispW, dl)

	if r.istio {
		// No Envoy: xds's --extproc-addr (read only by an Envoy on ADS) names the extproc
		// Service, which reaches the port extproc listens on.
		if _, ok := flag(xds.Args, "envoy-listen"); ok {
			t.Errorf("mode istio: xds --envoy-listen given, but there is no Envoy")
		}
		ea, _ := flag(xds.Args, "extproc-addr")
		el, _ := flag(extproc.Args, "listen")
		viaService("xds --extproc-addr", ea, "extproc", r.extproc(), el)
		if r.configMaps[svcName("envoy")] != nil {
			t.Errorf("mode istio: the Envoy bootstrap ConfigMap is rendered")
		}
	} else {
		// Envoy's listener port, as xds tells it, is the Envoy container's port and Service target.
		el, _ := flag(xds.Args, "envoy-listen")
		es := r.services[svcName("envoy")]
		if _, n, ok := resolvePort(envoyW, es.Spec.Ports[0].TargetPort); !ok || n != portOf(t, el) {
			t.Errorf("Envoy Service targets container port %d; xds --envoy-listen %s", n, el)
		}

		// Envoy's bootstrap reaches ADS through the xds Service.
		bs := bootstrapOf(t, r)
		ads, _ := flag(xds.Args, "ads-listen")
		sa := bs.socketAddr(t)
		viaService("bootstrap sluice_xds", net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue)), "xds", xdsW, ads)
	}

	// Every Service selects exactly one workload and every target port exists there.
	for name, s := range r.services {
		ws := r.podsOfMap(s.Spec.Selector)
		if len(ws) != 1 {
			t.Errorf("Service %s selects %v, want one workload", name, names(ws))
			continue
		}
		for _, p := range s.Spec.Ports {
			if _, _, ok := resolvePort(ws[0], p.TargetPort); !ok {
				t.Errorf("Service %s port %s: target %s is not a container port of %s", name, p.Name, p.TargetPort.String(), ws[0].name)
			}
		}
	}
	// HPAs target a rendered Deployment that leaves replicas to them; PDBs select one workload.
	for _, h := range r.hpas {
		w := r.workloads[h.Spec.ScaleTargetRef.Name]
		if w == nil || w.kind != h.Spec.ScaleTargetRef.Kind || h.Spec.ScaleTargetRef.APIVersion != "apps/v1" {
			t.Errorf("HPA %s targets %+v, not a rendered workload", h.Name, h.Spec.ScaleTargetRef)
		} else if w.replicas != nil {
			t.Errorf("HPA %s: %s also sets replicas (they would fight on every upgrade)", h.Name, w.name)
		}
	}
	for _, p := range r.pdbs {
		if ws := r.podsOf(p.Spec.Selector); len(ws) != 1 {
			t.Errorf("PDB %s selects %v, want one workload", p.Name, names(ws))
		}
	}
	// ConfigMap volumes exist.
	for _, w := range r.workloads {
		for _, v := range w.pod.Spec.Volumes {
			if v.ConfigMap != nil && r.configMaps[v.ConfigMap.Name] == nil {
				t.Errorf("%s: ConfigMap %s is not rendered", w.name, v.ConfigMap.Name)
			}
		}
	}
}

// listenPorts returns the TCP ports a container's process listens on, from its flags.
func listenPorts(t *testing.T, r *rendered, c *corev1.Container) map[int32]bool {
	ports := map[int32]bool{}
	switch {
	case c.Name == "envoy":
		// Envoy opens the listener xds gives it.
		el, _ := flag(r.workloads[svcName("xds")].container("xds").Args, "envoy-listen")
		ports[portOf(t, el)] = true
	case c.Name == "redis":
		p, _ := flag(c.Args, "port")
		n, _ := strconv.Atoi(p)
		ports[int32(n)] = true
	default:
		for _, f := range []string{"listen", "health-listen", "admin-listen", "fleet-listen", "ads-listen"} {
			if v, ok := flag(c.Args, f); ok && !strings.HasPrefix(v, "unix:") {
				ports[portOf(t, v)] = true
			}
		}
	}
	return ports
}

// checkProbes: every probe targets a port its container's process listens on, the Sluice
// probes use /healthz (liveness, startup) and /readyz (readiness), and every container
// declares exactly the ports it listens on.
func checkProbes(t *testing.T, r *rendered) {
	for _, w := range r.workloads {
		for i := range w.pod.Spec.Containers {
			c := &w.pod.Spec.Containers[i]
			listening := listenPorts(t, r, c)
			for _, p := range c.Ports {
				if !listening[p.ContainerPort] {
					t.Errorf("%s/%s declares port %d but listens on %v", w.name, c.Name, p.ContainerPort, sortedInts(listening))
				}
				delete(listening, p.ContainerPort)
			}
			for p := range listening {
				t.Errorf("%s/%s listens on %d without declaring it", w.name, c.Name, p)
			}
			if c.ReadinessProbe == nil {
				t.Errorf("%s/%s: no readiness probe", w.name, c.Name)
			}
			sluice := strings.HasSuffix(c.Command[0], "/sluice")
			for kind, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				if pr == nil {
					continue
				}
				var port intstr.IntOrString
				switch {
				case pr.HTTPGet != nil:
					port = pr.HTTPGet.Port
					want := "/healthz"
					if kind == "readiness" {
						want = "/readyz"
					}
					if sluice && pr.HTTPGet.Path != want {
						t.Errorf("%s/%s %s probe path %s, want %s", w.name, c.Name, kind, pr.HTTPGet.Path, want)
					}
				case pr.TCPSocket != nil:
					port = pr.TCPSocket.Port
				default:
					t.Errorf("%s/%s %s probe: want httpGet or tcpSocket", w.name, c.Name, kind)
					continue
				}
				pc, n, ok := resolvePort(w, port)
				if !ok || pc != c || !listenPorts(t, r, c)[n] {
					t.Errorf("%s/%s %s probe port %s is not a port this container listens on", w.name, c.Name, kind, port.String())
				}
			}
			if sluice && (c.LivenessProbe == nil || c.StartupProbe == nil) {
				t.Errorf("%s/%s: want liveness and startup probes", w.name, c.Name)
			}
		}
	}
}

func sortedInts(m map[int32]bool) []int32 {
	var out []int32
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checkSecurity: every container non-root, read-only root filesystem, no privilege
// escalation, all capabilities dropped, RuntimeDefault seccomp; no service-account token.
func checkSecurity(t *testing.T, r *rendered) {
	for _, w := range r.workloads {
		ps := w.pod.Spec.SecurityContext
		if ps == nil {
			ps = &corev1.PodSecurityContext{}
		}
		if w.pod.Spec.AutomountServiceAccountToken == nil || *w.pod.Spec.AutomountServiceAccountToken {
			t.Errorf("%s: service-account token mounted", w.name)
		}
		if w.pod.Spec.HostNetwork || w.pod.Spec.HostPID || w.pod.Spec.HostIPC {
			t.Errorf("%s: host namespaces", w.name)
		}
		all := append(slices.Clone(w.pod.Spec.InitContainers), w.pod.Spec.Containers...)
		for _, c := range all {
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s/%s: no securityContext", w.name, c.Name)
				continue
			}
			nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && ps.RunAsNonRoot != nil && *ps.RunAsNonRoot)
			uid := ps.RunAsUser
			if sc.RunAsUser != nil {
				uid = sc.RunAsUser
			}
			if !nonRoot || uid == nil || *uid == 0 {
				t.Errorf("%s/%s: not pinned to a non-root uid (runAsNonRoot %v)", w.name, c.Name, nonRoot)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s/%s: root filesystem writable", w.name, c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s/%s: privilege escalation allowed", w.name, c.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s/%s: privileged", w.name, c.Name)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s/%s: capabilities not all dropped", w.name, c.Name)
			}
			seccomp := ps.SeccompProfile
			if sc.SeccompProfile != nil {
				seccomp = sc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s/%s: seccomp profile not RuntimeDefault", w.name, c.Name)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: want cpu and memory requests and a memory limit", w.name, c.Name)
			}
		}
	}
}

// The secrets each process needs (split.go), as SLUICE_*_FILE, and nothing more.
var wantSecretFiles = map[string][]string{
	"xds":        {"SLUICE_ADMIN_TOKEN_FILE", "SLUICE_FLEET_TOKEN_FILE", "SLUICE_MASTER_KEY_FILE", "SLUICE_PEPPER_FILE"},
	"extproc":    {"SLUICE_CTX_KEY_FILE", "SLUICE_FLEET_TOKEN_FILE", "SLUICE_PEPPER_FILE"},
	"dispatcher": {"SLUICE_CTX_KEY_FILE", "SLUICE_FLEET_TOKEN_FILE", "SLUICE_MASTER_KEY_FILE"},
}

// checkSecrets: each process gets exactly its secrets, as files from a mounted Secret
// volume whose items exist in the rendered Secret (or an existing one the user names).
func checkSecrets(t *testing.T, r *rendered) {
	for _, w := range r.workloads {
		for _, c := range w.pod.Spec.Containers {
			var files []string
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "SLUICE_") && !strings.HasSuffix(e.Name, "_FILE") && e.Name != "SLUICE_OTLP_ENDPOINT" && e.Name != "SLUICE_REDIS_URL" {
					t.Errorf("%s/%s: secret %s passed by value, want a _FILE", w.name, c.Name, e.Name)
				}
				if e.Name == "SLUICE_REDIS_URL" && e.ValueFrom == nil && !strings.Contains(e.Value, "$(REDIS_PASSWORD)") {
					t.Errorf("%s/%s: SLUICE_REDIS_URL not from a Secret", w.name, c.Name)
				}
				if !strings.HasSuffix(e.Name, "_FILE") {
					continue
				}
				files = append(files, e.Name)
				checkSecretFile(t, r, w, &c, e.Value)
			}
			slices.Sort(files)
			if want, ok := wantSecretFiles[c.Name]; ok && !slices.Equal(files, want) {
				t.Errorf("%s/%s: secret files %v, want %v", w.name, c.Name, files, want)
			}
		}
	}
}

func checkSecretFile(t *testing.T, r *rendered, w *workload, c *corev1.Container, file string) {
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, file)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range w.pod.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				if it.Path != rel {
					continue
				}
				if s := r.secrets[v.Secret.SecretName]; s != nil {
					if _, ok := s.Data[it.Key]; !ok {
						t.Errorf("%s/%s: %s: key %s not in Secret %s", w.name, c.Name, file, it.Key, s.Name)
					}
				} else if v.Secret.SecretName != "sluice-secrets" { // existing-secret variant
					t.Errorf("%s/%s: %s: Secret %s is neither rendered nor the existingSecret", w.name, c.Name, file, v.Secret.SecretName)
				}
				return
			}
		}
	}
	t.Errorf("%s/%s: %s is not a file of a mounted Secret", w.name, c.Name, file)
}

// checkNoSecretOutsideSecrets: no secret value (from the rendered Secrets, plus extra)
// appears in any other manifest — ConfigMaps above all — raw or base64-encoded.
func checkNoSecretOutsideSecrets(t *testing.T, r *rendered, extra []string) {
	values := slices.Clone(extra)
	for _, s := range r.secrets {
		for k, v := range s.Data {
			if k == "users.acl" {
				continue // the bundled Redis's ACL line; its password is checked as "password"
			}
			values = append(values, string(v))
		}
	}
	if len(r.secrets) > 0 && len(values) == 0 {
		t.Fatalf("no secret values to look for")
	}
	for _, d := range r.docs {
		if d.Kind() == "Secret" {
			continue
		}
		text := string(d.Raw)
		if cm, ok := d.obj.(*corev1.ConfigMap); ok {
			for _, v := range cm.BinaryData {
				text += "\n" + string(v)
			}
		}
		for _, v := range values {
			for _, form := range []string{v, b64(v)} {
				if len(form) >= 8 && strings.Contains(text, form) {
					t.Errorf("%s contains a secret value", d)
				}
			}
		}
	}
}

// checkStore: the file store is a single-replica StatefulSet with a PVC; with Redis, xds is a
// Deployment reading SLUICE_REDIS_URL from a Secret.
func checkStore(t *testing.T, r *rendered, variant string) {
	w := r.workloads[svcName("xds")]
	c := w.container("xds")
	_, hasStoreDir := flag(c.Args, "store-dir")
	var url *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "SLUICE_REDIS_URL" {
			url = &c.Env[i]
		}
	}
	if _, ok := flag(c.Args, "redis-url"); ok {
		t.Errorf("xds: --redis-url on the command line (the URL may carry a password)")
	}
	redis := r.workloads[svcName("redis")] != nil
	switch {
	case hasStoreDir:
		if w.kind != "StatefulSet" || w.replicas == nil || *w.replicas != 1 || !slices.Contains(w.claims, "data") || url != nil || redis {
			t.Errorf("file store: want a 1-replica StatefulSet with a data PVC and no Redis; got %s replicas %v claims %v", w.kind, w.replicas, w.claims)
		}
	case url != nil:
		if w.kind != "Deployment" {
			t.Errorf("Redis store: xds is a %s, want a Deployment", w.kind)
		}
		if redis {
			if !strings.Contains(url.Value, svcFQDN("redis")+":6379") {
				t.Errorf("bundled Redis: SLUICE_REDIS_URL %q does not name the Redis Service", url.Value)
			}
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
				return e.Name == "REDIS_PASSWORD" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
			}) {
				t.Errorf("bundled Redis: REDIS_PASSWORD not from a Secret")
			}
		} else if url.ValueFrom == nil || url.ValueFrom.SecretKeyRef == nil {
			t.Errorf("external Redis: SLUICE_REDIS_URL not from a Secret")
		}
	default:
		t.Errorf("xds has neither --store-dir nor SLUICE_REDIS_URL")
	}
	if variant == "default" && !hasStoreDir {
		t.Errorf("default values: want the embedded file store")
	}
}

// redisEnv returns c's SLUICE_REDIS_URL and REDIS_PASSWORD variables, in order.
func redisEnv(c *corev1.Container) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, e := range c.Env {
		if e.Name == "SLUICE_REDIS_URL" || e.Name == "REDIS_PASSWORD" {
			out = append(out, e)
		}
	}
	return out
}

// checkCounters: extproc and the dispatcher share the budget and rate-limit counters in
// Redis. With Redis (bundled or external) each gets xds's SLUICE_REDIS_URL, the same way:
// from a Secret (external), or assembled by the kubelet from REDIS_PASSWORD, itself from the
// bundled Redis's Secret and defined before the URL that refers to it. Without Redis neither
// gets one. Both get --counter-failure-mode mode, and no --redis-url on the command line.
func checkCounters(t *testing.T, r *rendered, mode string) {
	xds := r.workloads[svcName("xds")].container("xds")
	want := redisEnv(xds)
	_, bundled := r.workloads[svcName("redis")]
	for _, c := range []*corev1.Container{r.extproc().container("extproc"), r.workloads[svcName("dispatcher")].container("dispatcher")} {
		if got, _ := flag(c.Args, "counter-failure-mode"); got != mode {
			t.Errorf("%s: --counter-failure-mode %q, want %q", c.Name, got, mode)
		}
		if _, ok := flag(c.Args, "redis-url"); ok {
			t.Errorf("%s: --redis-url on the command line (the URL may carry a password)", c.Name)
		}
		got := redisEnv(c)
		if len(want) == 0 {
			if len(got) > 0 {
				t.Errorf("%s: %v without Redis", c.Name, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Redis environment %+v, want xds's %+v", c.Name, got, want)
			continue
		}
		url := got[len(got)-1]
		switch {
		case url.Name != "SLUICE_REDIS_URL":
			t.Errorf("%s: SLUICE_REDIS_URL defined before REDIS_PASSWORD (the kubelet expands only earlier variables)", c.Name)
		case bundled:
			pw := got[0]
			if len(got) != 2 || pw.Name != "REDIS_PASSWORD" || pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil {
				t.Errorf("%s: bundled Redis: want REDIS_PASSWORD from a Secret, then SLUICE_REDIS_URL; got %+v", c.Name, got)
				continue
			}
			ref := pw.ValueFrom.SecretKeyRef
			if s := r.secrets[ref.Name]; s == nil || s.Data[ref.Key] == nil {
				t.Errorf("%s: REDIS_PASSWORD from %s/%s, which is not rendered", c.Name, ref.Name, ref.Key)
			}
			if want := "redis://:$(REDIS_PASSWORD)@" + svcFQDN("redis") + ":6379/0"; url.Value != want || url.ValueFrom != nil {
				t.Errorf("%s: SLUICE_REDIS_URL %q, want %q", c.Name, url.Value, want)
			}
		default:
			if len(got) != 1 || url.Value != "" || url.ValueFrom == nil || url.ValueFrom.SecretKeyRef == nil {
				t.Errorf("%s: external Redis: SLUICE_REDIS_URL %+v not from a Secret", c.Name, url)
				continue
			}
			// The chart's own URL Secret is rendered with the key; an existing one is the user's.
			if ref := url.ValueFrom.SecretKeyRef; ref.Name == fullname+"-redis-url" {
				if s := r.secrets[ref.Name]; s == nil || s.Data[ref.Key] == nil {
					t.Errorf("%s: SLUICE_REDIS_URL from %s/%s, which is not rendered", c.Name, ref.Name, ref.Key)
				}
			}
		}
	}
}

// TestCounters: counters.failureMode reaches extproc and the dispatcher in both modes, the
// Redis wiring of checkCounters holds in mode istio too (the standalone extproc admitted to the
// bundled Redis), and NOTES.txt says that budgets and rate limits need Redis.
func TestCounters(t *testing.T) {
	cases := map[string]struct {
		args []string
		mode string
	}{
		"open":                {[]string{"--set", "counters.failureMode=open"}, "open"},
		"closed explicitly":   {[]string{"--set", "counters.failureMode=closed"}, "closed"},
		"bundled open":        {[]string{"-f", filepath.Join(chartDir, "ci", "redis-bundled-values.yaml"), "--set", "counters.failureMode=open"}, "open"},
		"istio bundled":       {[]string{"-f", istioValues(), "-f", filepath.Join(chartDir, "ci", "redis-bundled-values.yaml")}, "closed"},
		"istio external open": {[]string{"-f", istioValues(), "-f", filepath.Join(chartDir, "ci", "external-redis-url-values.yaml"), "--set", "counters.failureMode=open"}, "open"},
	}
	for _, name := range sortedKeys(cases) {
		c := cases[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			docs, err := render(t, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			r := index(t, docs)
			if strings.HasPrefix(name, "istio") != r.istio {
				t.Fatalf("mode istio: %v", r.istio)
			}
			checkCounters(t, r, c.mode)
			checkNetworkPolicies(t, r)
			checkSecrets(t, r)
			checkStore(t, r, name)
		})
	}

	notes := map[string]struct {
		args []string
		want []string
	}{
		"file store":      {nil, []string{"Budgets and rate limits need Redis (redis.enabled or externalRedis)", "refused with 503"}},
		"file store open": {[]string{"--set", "counters.failureMode=open"}, []string{"Budgets and rate limits need Redis", "admitted unchecked"}},
		"bundled":         {[]string{"-f", filepath.Join(chartDir, "ci", "redis-bundled-values.yaml")}, []string{"counted in the bundled Redis", "counters.failureMode: closed"}},
		"external":        {[]string{"-f", filepath.Join(chartDir, "ci", "external-redis-values.yaml")}, []string{"counted in the external Redis"}},
	}
	for _, name := range sortedKeys(notes) {
		c := notes[name]
		t.Run("notes/"+name, func(t *testing.T) {
			t.Parallel()
			got := renderNotes(t, releaseName, c.args...)
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("NOTES.txt lacks %q:\n%s", w, got)
				}
			}
			if (len(c.args) > 0 && c.args[0] == "-f") == strings.Contains(got, "need Redis") {
				t.Errorf("NOTES.txt: the warning that budgets and rate limits need Redis is wrong for this store:\n%s", got)
			}
		})
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestNoSecretInConfigMaps renders with known secret values (and an external Redis URL
// with a password) and greps every non-Secret manifest for them.
func TestNoSecretInConfigMaps(t *testing.T) {
	known := map[string]string{
		"secrets.pepper":     "pepper-canary-0123456789abcdefghijklmnop",
		"secrets.masterKey":  "Y2FuYXJ5LW1hc3Rlci1rZXktMzItYnl0ZXMtbG9uZyE=",
		"secrets.adminToken": "admin-canary-0123456789abcdefghijklmnop",
		"secrets.fleetToken": "fleet-canary-0123456789abcdefghijklmnop",
		"secrets.ctxKey":     "ctxkey-canary-0123456789abcdefghijklmnop",
	}
	redisPW := "redis-canary-pw-0123456789"
	args := []string{"--set", "externalRedis.url=redis://:" + redisPW + "@redis.example:6379/0", "--set", "serviceMonitor.enabled=true",
		"--set", "otlp.endpoint=http://otel:4318"}
	var values []string
	for _, k := range sortedKeys(known) {
		args = append(args, "--set", k+"="+known[k])
		values = append(values, known[k])
	}
	docs, err := render(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	r := index(t, docs)
	// The values must reach the Secret (or the check below would prove nothing).
	s := r.secrets[fullname+"-secrets"]
	if s == nil {
		t.Fatalf("no generated Secret")
	}
	for key, want := range map[string]string{"pepper": known["secrets.pepper"], "master-key": known["secrets.masterKey"],
		"admin-token": known["secrets.adminToken"], "fleet-token": known["secrets.fleetToken"], "ctx-key": known["secrets.ctxKey"]} {
		if string(s.Data[key]) != want {
			t.Errorf("Secret key %s = %q, want the --set value", key, s.Data[key])
		}
	}
	if len(r.configMaps) == 0 {
		t.Fatalf("no ConfigMaps rendered")
	}
	checkNoSecretOutsideSecrets(t, r, append(values, redisPW))
}

// TestSchemaRejects: values.schema.json rejects typos, wrong types and bad enums, and the
// templates refuse contradictory settings.
func TestSchemaRejects(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string // in helm's error
	}{
		"typo at the top":         {[]string{"--set", "replicaCont=2"}, "Additional property replicaCont is not allowed"},
		"typo nested":             {[]string{"--set", "envoy.replicaCount=2"}, "Additional property replicaCount is not allowed"},
		"typo deep":               {[]string{"--set", "envoy.service.tpye=LoadBalancer"}, "Additional property tpye is not allowed"},
		"typo in resources":       {[]string{"--set", "dispatcher.resources.requests.cpus=1"}, "Additional property cpus is not allowed"},
		"bad enum":                {[]string{"--set", "envoy.service.type=External"}, "envoy.service.type must be one of"},
		"bad log level":           {[]string{"--set", "logLevel=verbose"}, "logLevel must be one of"},
		"wrong type":              {[]string{"--set", "envoy.replicas=two"}, "Invalid type. Expected: integer"},
		"out of range":            {[]string{"--set", "envoy.autoscaling.targetCPUUtilizationPercentage=150"}, "Must be less than or equal to 100"},
		"short pepper":            {[]string{"--set", "secrets.pepper=short"}, "secrets.pepper: Does not match pattern"},
		"bad master key":          {[]string{"--set", "secrets.masterKey=not-base64"}, "secrets.masterKey: Does not match pattern"},
		"bad provider env":        {[]string{"--set", "dispatcher.providers[0].env=OPENAI-KEY", "--set", "dispatcher.providers[0].secretName=x", "--set", "dispatcher.providers[0].secretKey=k"}, "env: Does not match pattern"},
		"provider without secret": {[]string{"--set", "dispatcher.providers[0].env=OPENAI_API_KEY"}, "secretName is required"},
		"redis url scheme":        {[]string{"--set", "externalRedis.url=http://redis:6379"}, "externalRedis.url: Does not match pattern"},
		"both redis kinds":        {[]string{"--set", "redis.enabled=true", "--set", "externalRedis.url=redis://r:6379/0"}, "set either redis.enabled or externalRedis"},
		"file store replicas":     {[]string{"--set", "xds.replicas=2"}, "xds.replicas > 1 needs Redis"},
		"hpa min above max":       {[]string{"--set", "envoy.autoscaling.minReplicas=5", "--set", "envoy.autoscaling.maxReplicas=3"}, "minReplicas exceeds maxReplicas"},
		"counter failure mode":    {[]string{"--set", "counters.failureMode=fail-open"}, "counters.failureMode must be one of the following"},
		"counter mode case":       {[]string{"--set", "counters.failureMode=Closed"}, "counters.failureMode must be one of the following"},
		"typo in counters":        {[]string{"--set", "counters.failuremode=open"}, "Additional property failuremode is not allowed"},
		// mode: istio
		"bad mode":                  {[]string{"--set", "mode=mesh"}, "mode must be one of the following"},
		"typo in istio":             {[]string{"--set", "mode=istio", "--set", "istio.gatway.namespace=x"}, "Additional property gatway is not allowed"},
		"typo in istio gateway":     {[]string{"--set", "mode=istio", "--set", "istio.gateway.namespce=x"}, "Additional property namespce is not allowed"},
		"typo in istio extproc":     {[]string{"--set", "mode=istio", "--set", "istio.extproc.replcas=3"}, "Additional property replcas is not allowed"},
		"typo in istio autoscaling": {[]string{"--set", "mode=istio", "--set", "istio.extproc.autoscaling.maxReplica=3"}, "Additional property maxReplica is not allowed"},
		"istio port type":           {[]string{"--set", "mode=istio", "--set", "istio.extproc.port=grpc"}, "Invalid type. Expected: integer"},
		"istio namespace name":      {[]string{"--set", "mode=istio", "--set", "istio.gateway.namespace=Istio_System"}, "istio.gateway.namespace: Does not match pattern"},
		"istio empty label value":   {[]string{"--set", "mode=istio", "--set", "istio.gateway.labels.istio="}, "Does not match pattern"},
		"istio no gateway labels":   {[]string{"--set", "mode=istio", "--set", "istio.gateway.labels=null"}, "labels is required"},
		"istio ports collide":       {[]string{"--set", "mode=istio", "--set", "istio.extproc.healthPort=9004"}, "istio.extproc.port and istio.extproc.healthPort must differ"},
		"istio hpa min above max":   {[]string{"--set", "mode=istio", "--set", "istio.extproc.autoscaling.minReplicas=5", "--set", "istio.extproc.autoscaling.maxReplicas=3"}, "istio.extproc.autoscaling.minReplicas exceeds maxReplicas"},
		"istio with an ingress":     {[]string{"--set", "mode=istio", "--set", "envoy.ingress.enabled=true"}, "envoy.ingress.enabled needs mode: envoy"},
	}
	for _, name := range sortedKeys(cases) {
		c := cases[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			docs, err := render(t, c.args...)
			if err == nil {
				t.Fatalf("helm template %v succeeded (%d documents), want a failure", c.args, len(docs))
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("helm template %v failed without %q:\n%v", c.args, c.want, err)
			}
		})
	}
}

// bootstrap is the part of Envoy's bootstrap the tests look at.
type bootstrap struct {
	raw map[string]any
}

type socketAddress struct {
	Address   string `json:"address"`
	PortValue int    `json:"port_value"`
}

func bootstrapOf(t *testing.T, r *rendered) bootstrap {
	t.Helper()
	cm := r.configMaps[svcName("envoy")]
	if cm == nil || cm.Data["bootstrap.yaml"] == "" {
		t.Fatalf("no Envoy bootstrap ConfigMap")
	}
	var raw map[string]any
	if err := yaml.UnmarshalStrict([]byte(cm.Data["bootstrap.yaml"]), &raw); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	return bootstrap{raw: raw}
}

func (b bootstrap) socketAddr(t *testing.T) socketAddress {
	t.Helper()
	var v struct {
		StaticResources struct {
			Clusters []struct {
				Name           string `json:"name"`
				LoadAssignment struct {
					Endpoints []struct {
						LbEndpoints []struct {
							Endpoint struct {
								Address struct {
									SocketAddress socketAddress `json:"socket_address"`
								} `json:"address"`
							} `json:"endpoint"`
						} `json:"lb_endpoints"`
					} `json:"endpoints"`
				} `json:"load_assignment"`
			} `json:"clusters"`
		} `json:"static_resources"`
	}
	js, _ := json.Marshal(b.raw)
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatal(err)
	}
	for _, c := range v.StaticResources.Clusters {
		if c.Name == "sluice_xds" && len(c.LoadAssignment.Endpoints) == 1 && len(c.LoadAssignment.Endpoints[0].LbEndpoints) == 1 {
			return c.LoadAssignment.Endpoints[0].LbEndpoints[0].Endpoint.Address.SocketAddress
		}
	}
	t.Fatalf("bootstrap: no single-endpoint sluice_xds cluster")
	return socketAddress{}
}

// TestEnvoyBootstrap: the chart's bootstrap is exactly what envoy/bootstrap.yaml.tmpl (the
// template envoy.Bootstrap renders for `sluice serve`) gives for the same parameters, and
// Envoy itself accepts it (`envoy --mode validate`) when an Envoy binary is available.
func TestEnvoyBootstrap(t *testing.T) {
	docs, err := render(t)
	if err != nil {
		t.Fatal(err)
	}
	r := index(t, docs)
	got := bootstrapOf(t, r)

	src, err := os.ReadFile(filepath.Join(repoRoot, "envoy", "bootstrap.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := template.Must(template.New("bootstrap").Funcs(template.FuncMap{
		"json": func(s string) (string, error) { b, err := json.Marshal(s); return string(b), err },
	}).Parse(string(src)))
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, map[string]any{
		"NodeID": "sluice-envoy", "Cluster": fullname, "AdminHost": "127.0.0.1", "AdminPort": 9901,
		"XDSHost": svcFQDN("xds"), "XDSPort": 9002, "XDSClusterType": "STRICT_DNS",
	}); err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := yaml.UnmarshalStrict(buf.Bytes(), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.raw, want) {
		g, _ := json.MarshalIndent(got.raw, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("chart bootstrap differs from envoy/bootstrap.yaml.tmpl:\n--- chart\n%s\n--- template\n%s", g, w)
	}

	envoyBin := os.Getenv("SLUICE_ENVOY_BIN")
	if envoyBin == "" {
		if b, err := os.ReadFile(filepath.Join(repoRoot, ".venv", "envoy-1.40.0.path")); err == nil {
			envoyBin = strings.TrimSpace(string(b))
		}
	}
	if envoyBin == "" {
		if os.Getenv("SLUICE_E2E_REQUIRED") != "" {
			t.Fatal("no Envoy binary (SLUICE_ENVOY_BIN) to validate the bootstrap")
		}
		t.Skip("no Envoy binary: set SLUICE_ENVOY_BIN to validate the bootstrap with envoy --mode validate")
	}
	f := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(f, []byte(r.configMaps[svcName("envoy")].Data["bootstrap.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	// The Envoy container's own flags, with $(POD_NAME) expanded as the kubelet would.
	args := slices.Clone(r.workloads[svcName("envoy")].container("envoy").Args)
	for i, a := range args {
		switch {
		case a == "$(POD_NAME)":
			args[i] = "gw-sluice-envoy-0"
		case strings.HasPrefix(a, "/etc/envoy/"):
			args[i] = f
		}
	}
	cmd := exec.Command(envoyBin, append([]string{"--mode", "validate"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("envoy --mode validate: %v\n%s", err, out)
	}
}

// TestDocs: the README documents every variant, and values.yaml comments every key.
func TestDocs(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range variants(t)[1:] {
		if !strings.Contains(string(readme), "ci/"+v.name+"-values.yaml") {
			t.Errorf("README.md does not document ci/%s-values.yaml", v.name)
		}
	}
	values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(values), "\n")
	for i, line := range lines {
		trim := strings.TrimSpace(line)
		if trim == "" || strings.HasPrefix(trim, "#") || !strings.Contains(trim, ":") {
			continue
		}
		key := strings.TrimPrefix(trim, "- ")
		if !isKey(key) {
			continue
		}
		// A key is documented by a comment directly above it, or by being a field of a
		// flow mapping documented as a whole (resources: {cpu, memory}).
		prev := ""
		for j := i - 1; j >= 0; j-- {
			if p := strings.TrimSpace(lines[j]); p != "" {
				prev = p
				break
			}
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if strings.HasPrefix(prev, "#") || strings.HasPrefix(prev, "- #") {
			continue
		}
		if parentIsResources(lines, i, indent) {
			continue
		}
		t.Errorf("values.yaml:%d: %q has no comment", i+1, trim)
	}
}

func isKey(s string) bool {
	k, _, ok := strings.Cut(s, ":")
	if !ok || k == "" {
		return false
	}
	for _, r := range k {
		if !(r == '-' || r == '_' || r == '.' || r == '/' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

// parentIsResources reports whether line i is requests/limits under a resources: key.
func parentIsResources(lines []string, i, indent int) bool {
	for j := i - 1; j >= 0; j-- {
		l := lines[j]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if in := len(l) - len(strings.TrimLeft(l, " ")); in < indent {
			return strings.TrimSpace(l) == "resources:"
		}
	}
	return false
}
