package charts

import (
	"fmt"
	"path"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The Kubernetes schema check. kubeconform fetches its schemas from the internet at run
// time; here every document is strictly decoded (case-sensitive, unknown and duplicate
// fields rejected — the decoder the API server itself uses, sigs.k8s.io/json) into the
// typed structs of the pinned k8s.io/api module, then checked with apimachinery's
// validators for what the API server would also reject (names, labels, selectors, ports,
// probe handlers, volume references, env sources).

// ServiceMonitor (monitoring.coreos.com/v1) is not in k8s.io/api: a minimal typed subset of
// the Prometheus Operator's CRD, strict-decoded the same way, so a misspelt field fails.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port,omitempty"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// typed is a decoded document.
type typed struct {
	doc
	obj any
}

func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}, nil
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &serviceMonitor{}, nil
	}
	return nil, fmt.Errorf("unexpected kind %s %s (add it to the validator deliberately)", apiVersion, kind)
}

// decodeStrict converts d to JSON (duplicate YAML keys rejected) and decodes it into its
// typed struct, rejecting unknown fields, duplicate fields and case mismatches.
func decodeStrict(d doc) (typed, error) {
	obj, err := newObject(d.APIVersion(), d.Kind())
	if err != nil {
		return typed{}, err
	}
	js, err := yaml.YAMLToJSONStrict(d.Raw)
	if err != nil {
		return typed{}, err
	}
	strictErrs, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return typed{}, err
	}
	if len(strictErrs) > 0 {
		return typed{}, fmt.Errorf("strict decoding: %v", strictErrs)
	}
	return typed{doc: d, obj: obj}, nil
}

// validateObject applies the API server's rules that the chart's objects touch.
func validateObject(t typed) field.ErrorList {
	var errs field.ErrorList
	meta := func(m *metav1.ObjectMeta, nameFn apivalidation.ValidateNameFunc) {
		errs = append(errs, apivalidation.ValidateObjectMeta(m, true, nameFn, field.NewPath("metadata"))...)
		if m.Namespace != namespace {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), m.Namespace, "want the release namespace"))
		}
	}
	sub := apivalidation.NameIsDNSSubdomain
	switch o := t.obj.(type) {
	case *corev1.ConfigMap:
		meta(&o.ObjectMeta, sub)
		for k := range o.Data {
			for _, msg := range validation.IsConfigMapKey(k) {
				errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, msg))
			}
		}
	case *corev1.Secret:
		meta(&o.ObjectMeta, sub)
		for k := range o.Data {
			for _, msg := range validation.IsConfigMapKey(k) {
				errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, msg))
			}
		}
	case *corev1.ServiceAccount:
		meta(&o.ObjectMeta, sub)
	case *corev1.Service:
		meta(&o.ObjectMeta, apivalidation.NameIsDNS1035Label)
		errs = append(errs, validateService(o)...)
	case *appsv1.Deployment:
		meta(&o.ObjectMeta, sub)
		errs = append(errs, validateWorkload(o.Spec.Selector, &o.Spec.Template, nil, field.NewPath("spec"))...)
		if o.Spec.Replicas != nil && *o.Spec.Replicas < 0 {
			errs = append(errs, field.Invalid(field.NewPath("spec", "replicas"), *o.Spec.Replicas, "negative"))
		}
	case *appsv1.StatefulSet:
		meta(&o.ObjectMeta, sub)
		var claims []string
		for _, c := range o.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
			if len(c.Spec.AccessModes) == 0 {
				errs = append(errs, field.Required(field.NewPath("spec", "volumeClaimTemplates").Key(c.Name).Child("accessModes"), ""))
			}
			if _, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
				errs = append(errs, field.Required(field.NewPath("spec", "volumeClaimTemplates").Key(c.Name).Child("resources"), "storage request"))
			}
		}
		if o.Spec.ServiceName == "" {
			errs = append(errs, field.Required(field.NewPath("spec", "serviceName"), ""))
		}
		errs = append(errs, validateWorkload(o.Spec.Selector, &o.Spec.Template, claims, field.NewPath("spec"))...)
	case *policyv1.PodDisruptionBudget:
		meta(&o.ObjectMeta, sub)
		p := field.NewPath("spec")
		if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
			errs = append(errs, field.Invalid(p, "", "exactly one of minAvailable and maxUnavailable"))
		}
		errs = append(errs, validateSelector(o.Spec.Selector, p.Child("selector"))...)
	case *autoscalingv2.HorizontalPodAutoscaler:
		meta(&o.ObjectMeta, sub)
		p := field.NewPath("spec")
		if o.Spec.MinReplicas == nil || *o.Spec.MinReplicas < 1 || *o.Spec.MinReplicas > o.Spec.MaxReplicas {
			errs = append(errs, field.Invalid(p.Child("minReplicas"), o.Spec.MinReplicas, "must be 1..maxReplicas"))
		}
		for i, m := range o.Spec.Metrics {
			if m.Type != autoscalingv2.ResourceMetricSourceType || m.Resource == nil || m.Resource.Target.Type != autoscalingv2.UtilizationMetricType ||
				m.Resource.Target.AverageUtilization == nil || *m.Resource.Target.AverageUtilization < 1 {
				errs = append(errs, field.Invalid(p.Child("metrics").Index(i), m, "want a Resource utilization target"))
			}
		}
	case *networkingv1.NetworkPolicy:
		meta(&o.ObjectMeta, sub)
		p := field.NewPath("spec")
		errs = append(errs, validateSelector(&o.Spec.PodSelector, p.Child("podSelector"))...)
		for i, r := range o.Spec.Ingress {
			for j, peer := range r.From {
				pp := p.Child("ingress").Index(i).Child("from").Index(j)
				n := 0
				if peer.PodSelector != nil || peer.NamespaceSelector != nil {
					n++
					errs = append(errs, validateSelector(peer.PodSelector, pp.Child("podSelector"))...)
					errs = append(errs, validateSelector(peer.NamespaceSelector, pp.Child("namespaceSelector"))...)
				}
				if peer.IPBlock != nil {
					n++
				}
				if n != 1 {
					errs = append(errs, field.Invalid(pp, peer, "a peer is selectors or an ipBlock"))
				}
			}
			for j, port := range r.Ports {
				if port.Port != nil {
					errs = append(errs, validatePortRef(*port.Port, p.Child("ingress").Index(i).Child("ports").Index(j))...)
				}
			}
		}
	case *networkingv1.Ingress:
		meta(&o.ObjectMeta, sub)
		for i, r := range o.Spec.Rules {
			if r.HTTP == nil || len(r.HTTP.Paths) == 0 {
				errs = append(errs, field.Required(field.NewPath("spec", "rules").Index(i).Child("http"), ""))
				continue
			}
			for j, hp := range r.HTTP.Paths {
				pp := field.NewPath("spec", "rules").Index(i).Child("http", "paths").Index(j)
				if hp.PathType == nil || !strings.HasPrefix(hp.Path, "/") {
					errs = append(errs, field.Invalid(pp, hp.Path, "path must be absolute with a pathType"))
				}
				if hp.Backend.Service == nil || hp.Backend.Service.Name == "" {
					errs = append(errs, field.Required(pp.Child("backend", "service"), ""))
				}
			}
		}
	case *serviceMonitor:
		meta(&o.ObjectMeta, sub)
		if len(o.Spec.Endpoints) == 0 {
			errs = append(errs, field.Required(field.NewPath("spec", "endpoints"), ""))
		}
		for i, e := range o.Spec.Endpoints {
			if e.Port == "" {
				errs = append(errs, field.Required(field.NewPath("spec", "endpoints").Index(i).Child("port"), ""))
			}
		}
		errs = append(errs, validateSelector(&o.Spec.Selector, field.NewPath("spec", "selector"))...)
	}
	return errs
}

func validateSelector(s *metav1.LabelSelector, p *field.Path) field.ErrorList {
	if s == nil {
		return nil
	}
	return metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, p)
}

func validatePortRef(port intstr.IntOrString, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port.Type == intstr.String {
		for _, msg := range validation.IsValidPortName(port.StrVal) {
			errs = append(errs, field.Invalid(p, port.StrVal, msg))
		}
	} else {
		for _, msg := range validation.IsValidPortNum(int(port.IntVal)) {
			errs = append(errs, field.Invalid(p, port.IntVal, msg))
		}
	}
	return errs
}

func validateService(s *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec")
	switch s.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), s.Spec.Type, []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer}))
	}
	if len(s.Spec.Ports) == 0 {
		errs = append(errs, field.Required(p.Child("ports"), ""))
	}
	names := map[string]bool{}
	for i, port := range s.Spec.Ports {
		pp := p.Child("ports").Index(i)
		if len(s.Spec.Ports) > 1 && port.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), "several ports"))
		}
		if names[port.Name] {
			errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
		}
		names[port.Name] = true
		for _, msg := range validation.IsValidPortNum(int(port.Port)) {
			errs = append(errs, field.Invalid(pp.Child("port"), port.Port, msg))
		}
		errs = append(errs, validatePortRef(port.TargetPort, pp.Child("targetPort"))...)
		if port.NodePort != 0 && s.Spec.Type == corev1.ServiceTypeClusterIP {
			errs = append(errs, field.Forbidden(pp.Child("nodePort"), "ClusterIP"))
		}
	}
	if len(s.Spec.Selector) == 0 {
		errs = append(errs, field.Required(p.Child("selector"), "every chart Service selects pods"))
	}
	return errs
}

// validateWorkload checks a pod template against its selector and the API server's pod
// rules the chart relies on. claims are a StatefulSet's volumeClaimTemplates.
func validateWorkload(sel *metav1.LabelSelector, tpl *corev1.PodTemplateSpec, claims []string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		errs = append(errs, field.Required(p.Child("selector"), ""))
	} else {
		errs = append(errs, validateSelector(sel, p.Child("selector"))...)
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			errs = append(errs, field.Invalid(p.Child("selector"), sel, err.Error()))
		} else if !s.Matches(labels.Set(tpl.Labels)) {
			errs = append(errs, field.Invalid(p.Child("template", "metadata", "labels"), tpl.Labels, "selector does not match template labels"))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(tpl.Labels, p.Child("template", "metadata", "labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(tpl.Annotations, p.Child("template", "metadata", "annotations"))...)
	spec := &tpl.Spec
	sp := p.Child("template", "spec")
	volumes := map[string]bool{}
	for _, c := range claims {
		volumes[c] = true
	}
	for i, v := range spec.Volumes {
		vp := sp.Child("volumes").Index(i)
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			errs = append(errs, field.Invalid(vp.Child("name"), v.Name, msg))
		}
		if volumes[v.Name] {
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		volumes[v.Name] = true
		n := 0
		for _, set := range []bool{v.EmptyDir != nil, v.ConfigMap != nil, v.Secret != nil, v.PersistentVolumeClaim != nil, v.Projected != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, field.Invalid(vp, v.Name, "exactly one volume source"))
		}
	}
	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(sp.Child("containers"), ""))
	}
	names := map[string]bool{}
	for i := range spec.InitContainers {
		errs = append(errs, validateContainer(&spec.InitContainers[i], volumes, names, sp.Child("initContainers").Index(i))...)
	}
	for i := range spec.Containers {
		errs = append(errs, validateContainer(&spec.Containers[i], volumes, names, sp.Child("containers").Index(i))...)
	}
	switch spec.RestartPolicy {
	case "", corev1.RestartPolicyAlways:
	default:
		errs = append(errs, field.NotSupported(sp.Child("restartPolicy"), spec.RestartPolicy, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	return errs
}

func validateContainer(c *corev1.Container, volumes, names map[string]bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(c.Name) {
		errs = append(errs, field.Invalid(p.Child("name"), c.Name, msg))
	}
	if names[c.Name] {
		errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
	}
	names[c.Name] = true
	if c.Image == "" || strings.HasSuffix(c.Image, ":") {
		errs = append(errs, field.Required(p.Child("image"), "image with a tag or digest"))
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, field.NotSupported(p.Child("imagePullPolicy"), c.ImagePullPolicy, []corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever}))
	}
	ports := map[string]bool{}
	for i, port := range c.Ports {
		pp := p.Child("ports").Index(i)
		if port.Name != "" {
			for _, msg := range validation.IsValidPortName(port.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
			}
			if ports[port.Name] {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			ports[port.Name] = true
		}
		for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
			errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
		}
	}
	for i, e := range c.Env {
		ep := p.Child("env").Index(i)
		for _, msg := range validation.IsEnvVarName(e.Name) {
			errs = append(errs, field.Invalid(ep.Child("name"), e.Name, msg))
		}
		if e.ValueFrom != nil {
			if e.Value != "" {
				errs = append(errs, field.Invalid(ep, e.Name, "value and valueFrom"))
			}
			n := 0
			for _, set := range []bool{e.ValueFrom.FieldRef != nil, e.ValueFrom.SecretKeyRef != nil, e.ValueFrom.ConfigMapKeyRef != nil, e.ValueFrom.ResourceFieldRef != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				errs = append(errs, field.Invalid(ep.Child("valueFrom"), e.Name, "exactly one source"))
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil && (r.Name == "" || r.Key == "") {
				errs = append(errs, field.Required(ep.Child("valueFrom", "secretKeyRef"), "name and key"))
			}
		}
	}
	mounts := map[string]bool{}
	for i, m := range c.VolumeMounts {
		mp := p.Child("volumeMounts").Index(i)
		if !volumes[m.Name] {
			errs = append(errs, field.NotFound(mp.Child("name"), m.Name))
		}
		if !path.IsAbs(m.MountPath) || mounts[m.MountPath] {
			errs = append(errs, field.Invalid(mp.Child("mountPath"), m.MountPath, "absolute and unique"))
		}
		mounts[m.MountPath] = true
	}
	for name, pr := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
		if pr == nil {
			continue
		}
		pp := p.Child(name)
		n := 0
		var port intstr.IntOrString
		if h := pr.HTTPGet; h != nil {
			n++
			port = h.Port
			if !strings.HasPrefix(h.Path, "/") {
				errs = append(errs, field.Invalid(pp.Child("httpGet", "path"), h.Path, "absolute path"))
			}
		}
		if h := pr.TCPSocket; h != nil {
			n++
			port = h.Port
		}
		if h := pr.GRPC; h != nil {
			n++
			port = intstr.FromInt32(h.Port)
		}
		if pr.Exec != nil {
			n++
		}
		if n != 1 {
			errs = append(errs, field.Invalid(pp, name, "exactly one handler"))
			continue
		}
		if pr.Exec == nil {
			errs = append(errs, validatePortRef(port, pp.Child("port"))...)
			if port.Type == intstr.String && !ports[port.StrVal] {
				errs = append(errs, field.NotFound(pp.Child("port"), port.StrVal))
			}
		}
		if name != "readinessProbe" && pr.SuccessThreshold > 1 {
			errs = append(errs, field.Invalid(pp.Child("successThreshold"), pr.SuccessThreshold, "must be 1"))
		}
	}
	if l := c.Lifecycle; l != nil && l.PreStop != nil {
		n := 0
		for _, set := range []bool{l.PreStop.Exec != nil, l.PreStop.HTTPGet != nil, l.PreStop.TCPSocket != nil, l.PreStop.Sleep != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, field.Invalid(p.Child("lifecycle", "preStop"), "", "exactly one handler"))
		}
	}
	for _, rl := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		for name := range rl {
			switch name {
			case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage:
			default:
				errs = append(errs, field.NotSupported(p.Child("resources"), name, []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage}))
			}
		}
	}
	for name, req := range c.Resources.Requests {
		if lim, ok := c.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(p.Child("resources", "requests").Key(string(name)), req.String(), "exceeds the limit"))
		}
	}
	return errs
}
