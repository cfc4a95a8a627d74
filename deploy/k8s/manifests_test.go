// Package k8s holds payonce's Kubernetes manifests (base/, overlays/) and
// this test of them. It renders every overlay with `kubectl kustomize`, as a
// user would, decodes every object strictly into the k8s.io/api types (an
// unknown or misspelt field fails), and checks what the architecture needs
// of them: probes, the coordinator's peer list, Secrets that exist, and
// NetworkPolicies that allow exactly the flows docs/kubernetes.md draws.
//
// The CI has no Kubernetes API server (building kube-apiserver from its Go
// module was judged too costly for CI here; docs/kubernetes.md says why),
// so `kubectl apply --dry-run=server` is not run; strict decoding into the
// same Go types the API server uses stands in for its schema check.
package k8s

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// rendered is one overlay, decoded.
type rendered struct {
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	services     map[string]*corev1.Service
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	jobs         map[string]*batchv1.Job
	pdbs         map[string]*policyv1.PodDisruptionBudget
	policies     []*networkingv1.NetworkPolicy
	cnpgClusters map[string]*cnpgCluster
}

// cnpgCluster is the part of CloudNativePG's Cluster (postgresql.cnpg.io/v1)
// the production overlay uses. k8s.io/api does not know the type, so its
// fields are declared here, and decoded as strictly as the rest.
type cnpgCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Instances         int `json:"instances"`
		InheritedMetadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"inheritedMetadata"`
		Bootstrap struct {
			InitDB struct {
				Database string `json:"database"`
				Owner    string `json:"owner"`
			} `json:"initdb"`
		} `json:"bootstrap"`
		Storage struct {
			Size string `json:"size"`
		} `json:"storage"`
	} `json:"spec"`
}

var overlays = []string{"dev", "production"}

// render runs `kubectl kustomize` on an overlay and decodes every object.
func render(t *testing.T, overlay string) *rendered {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is not installed (Debian: apt-get install kubernetes-client; .ci/run installs it)")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", "overlays/"+overlay)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize overlays/%s: %v\n%s", overlay, err, stderr.String())
	}
	r, err := decodeAll(out)
	if err != nil {
		t.Fatalf("overlays/%s: %v", overlay, err)
	}
	return r
}

// decodeAll decodes a multi-document YAML stream, each document strictly
// into the Go type of its kind.
func decodeAll(stream []byte) (*rendered, error) {
	r := &rendered{
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		services: map[string]*corev1.Service{}, deployments: map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{}, jobs: map[string]*batchv1.Job{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, cnpgClusters: map[string]*cnpgCluster{},
	}
	for _, doc := range strings.Split("\n"+string(stream), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var head metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("read kind: %w", err)
		}
		var into any
		var name func() string
		switch head.APIVersion + " " + head.Kind {
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			into, name = o, func() string { r.configMaps[o.Name] = o; return o.Name }
		case "v1 Secret":
			o := &corev1.Secret{}
			into, name = o, func() string { r.secrets[o.Name] = o; return o.Name }
		case "v1 Service":
			o := &corev1.Service{}
			into, name = o, func() string { r.services[o.Name] = o; return o.Name }
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			into, name = o, func() string { r.deployments[o.Name] = o; return o.Name }
		case "apps/v1 StatefulSet":
			o := &appsv1.StatefulSet{}
			into, name = o, func() string { r.statefulSets[o.Name] = o; return o.Name }
		case "batch/v1 Job":
			o := &batchv1.Job{}
			into, name = o, func() string { r.jobs[o.Name] = o; return o.Name }
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			into, name = o, func() string { r.pdbs[o.Name] = o; return o.Name }
		case "networking.k8s.io/v1 NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			into, name = o, func() string { r.policies = append(r.policies, o); return o.Name }
		case "postgresql.cnpg.io/v1 Cluster":
			o := &cnpgCluster{}
			into, name = o, func() string { r.cnpgClusters[o.Name] = o; return o.Name }
		default:
			return nil, fmt.Errorf("a %s %s: no Go type to check it against (add it to decodeAll)", head.APIVersion, head.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", head.Kind, err, doc)
		}
		if name() == "" {
			return nil, fmt.Errorf("a %s without a name", head.Kind)
		}
	}
	return r, nil
}

// TestStrictDecodingRefusesUnknownFields: a misspelt field (readinesProbe)
// must fail the decoding, or the checks below would pass over it.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	doc := `apiVersion: apps/v1
kind: Deployment
metadata: { name: orders }
spec:
  selector: { matchLabels: { app: orders } }
  template:
    metadata: { labels: { app: orders } }
    spec:
      containers:
        - name: orders
          image: payonce/orders:local
          readinesProbe: { httpGet: { path: /readyz, port: 8080 } }
`
	if _, err := decodeAll([]byte(doc)); err == nil || !strings.Contains(err.Error(), "readinesProbe") {
		t.Fatalf("decoding a misspelt field: %v, want an error naming it", err)
	}
	if _, err := decodeAll([]byte("apiVersion: v1\nkind: Pod\nmetadata: { name: x }\n")); err == nil {
		t.Fatal("decoded a kind with no Go type to check it against")
	}
}

// payonce's own workloads and the port their API, probes and /metrics share.
var payonceWorkloads = map[string]int32{"orders": 8080, "payments": 8090, "bank": 8099, "coordinator": 8080}

func TestWorkloadsProbesAndHardening(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			for name, port := range payonceWorkloads {
				var pod *corev1.PodTemplateSpec
				if d, ok := r.deployments[name]; ok {
					pod = &d.Spec.Template
				} else if s, ok := r.statefulSets[name]; ok {
					pod = &s.Spec.Template
				} else {
					t.Errorf("%s: no Deployment or StatefulSet", name)
					continue
				}
				c := container(t, pod, name)
				checkProbe(t, name+" readiness", c.ReadinessProbe, "/readyz", c, port)
				checkProbe(t, name+" liveness", c.LivenessProbe, "/healthz", c, port)
				checkHardened(t, name, pod, c)
				if _, ok := r.deployments[name]; ok {
					if env := envVar(c, "INSTANCE_ID"); env == nil || env.ValueFrom == nil || env.ValueFrom.FieldRef == nil ||
						env.ValueFrom.FieldRef.FieldPath != "metadata.name" {
						t.Errorf("%s: INSTANCE_ID is not the pod's name: %+v", name, env)
					}
				}
			}
			job, ok := r.jobs["migrate"]
			if !ok {
				t.Fatal("no migrate Job")
			}
			checkHardened(t, "migrate", &job.Spec.Template, container(t, &job.Spec.Template, "migrate"))
			if args := container(t, &job.Spec.Template, "migrate").Args; !slices.Equal(args, []string{"up"}) {
				t.Errorf("migrate Job args %v, want [up]", args)
			}
		})
	}
}

func container(t *testing.T, pod *corev1.PodTemplateSpec, name string) *corev1.Container {
	t.Helper()
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// checkProbe: an HTTP GET of path on a port the container declares, which
// is the port the service listens on.
func checkProbe(t *testing.T, what string, p *corev1.Probe, path string, c *corev1.Container, port int32) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: no HTTP probe", what)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s: probes %s, want %s", what, p.HTTPGet.Path, path)
	}
	got := p.HTTPGet.Port.IntVal
	for _, cp := range c.Ports {
		if p.HTTPGet.Port.StrVal != "" && cp.Name == p.HTTPGet.Port.StrVal {
			got = cp.ContainerPort
		}
	}
	if got != port {
		t.Errorf("%s: probes port %v (%d), want %d", what, p.HTTPGet.Port.String(), got, port)
	}
}

// checkHardened: not root, no privilege escalation, no capability, a
// read-only root file system, and resources requested and limited.
func checkHardened(t *testing.T, name string, pod *corev1.PodTemplateSpec, c *corev1.Container) {
	t.Helper()
	psc, sc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod may run as root: %+v", name, psc)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: root file system is writable", name)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: privilege escalation allowed", name)
	}
	if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: capabilities not dropped", name)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources %+v: want cpu and memory requests and a memory limit", name, c.Resources)
	}
}

// TestCoordinatorPeers: the StatefulSet's Raft ids are its pods' names, and
// the peer list every node boots from names exactly those pods, at the
// headless Service's per-pod DNS names and the container's ports; the
// clients' COORDINATOR_URLS name the same nodes; a drain keeps a quorum.
func TestCoordinatorPeers(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			sts, ok := r.statefulSets["coordinator"]
			if !ok {
				t.Fatal("no coordinator StatefulSet")
			}
			if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
				t.Fatalf("coordinator replicas %v, want 3", sts.Spec.Replicas)
			}
			if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
				t.Errorf("podManagementPolicy %q: with OrderedReady, pod 1 waits for pod 0 to be ready, which needs a leader, which needs pod 1",
					sts.Spec.PodManagementPolicy)
			}
			svc, ok := r.services[sts.Spec.ServiceName]
			if !ok || svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
				t.Fatalf("serviceName %q: want a headless Service publishing not-ready pods (peers must resolve before a leader exists)", sts.Spec.ServiceName)
			}
			c := container(t, &sts.Spec.Template, "coordinator")
			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if id := envVar(c, "COORDINATOR_NODE_ID"); id == nil || id.ValueFrom == nil || id.ValueFrom.FieldRef == nil || id.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("COORDINATOR_NODE_ID is not the pod's name (its ordinal): %+v", id)
			}
			var wantPeers, wantURLs []string
			for i := range int(*sts.Spec.Replicas) {
				host := fmt.Sprintf("%s-%d.%s", sts.Name, i, svc.Name)
				wantPeers = append(wantPeers, fmt.Sprintf("%s-%d=%s:%d=http://%s:%d", sts.Name, i, host, ports["raft"], host, ports["http"]))
				wantURLs = append(wantURLs, fmt.Sprintf("http://%s:%d", host, ports["http"]))
			}
			if peers := envVar(c, "COORDINATOR_PEERS"); peers == nil || peers.Value != strings.Join(wantPeers, ",") {
				t.Errorf("COORDINATOR_PEERS = %+v\nwant %s", peers, strings.Join(wantPeers, ","))
			}
			if bind := envVar(c, "COORDINATOR_RAFT_BIND"); bind == nil || bind.Value != fmt.Sprintf("0.0.0.0:%d", ports["raft"]) {
				t.Errorf("COORDINATOR_RAFT_BIND = %+v, want the raft port %d", bind, ports["raft"])
			}
			if got := r.configMaps["payonce-env"].Data["COORDINATOR_URLS"]; got != strings.Join(wantURLs, ",") {
				t.Errorf("COORDINATOR_URLS = %q, want %q", got, strings.Join(wantURLs, ","))
			}
			dataDir := envVar(c, "COORDINATOR_DATA_DIR")
			mounted := false
			for _, m := range c.VolumeMounts {
				for _, claim := range sts.Spec.VolumeClaimTemplates {
					mounted = mounted || (m.Name == claim.Name && dataDir != nil && m.MountPath == dataDir.Value)
				}
			}
			if !mounted {
				t.Errorf("COORDINATOR_DATA_DIR %+v is not on a PersistentVolumeClaim of the StatefulSet", dataDir)
			}
			pdb, ok := r.pdbs["coordinator"]
			if !ok || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 2 ||
				pdb.Spec.Selector == nil || !matches(pdb.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) {
				t.Errorf("no PodDisruptionBudget keeping 2 coordinator pods: %+v", pdb)
			}
		})
	}
}

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestSecretsAndConfigExist: every Secret and ConfigMap key a workload
// reads is rendered by the overlay, or (production) is one of the Secrets
// docs/kubernetes.md tells the operator, or CloudNativePG, to create.
func TestSecretsAndConfigExist(t *testing.T) {
	external := map[string][]string{
		"production": {"payonce/orders-api-keys", "payonce/payments-api-keys", "payonce/payments-peer-api-key",
			"payonce/internal-secret", "payonce/orders-payments-api-key", "orders-db-app/uri", "payments-db-app/uri"},
	}
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			var pods []*corev1.PodTemplateSpec
			for _, d := range r.deployments {
				pods = append(pods, &d.Spec.Template)
			}
			for _, s := range r.statefulSets {
				pods = append(pods, &s.Spec.Template)
			}
			for _, j := range r.jobs {
				pods = append(pods, &j.Spec.Template)
			}
			for _, pod := range pods {
				for _, c := range pod.Spec.Containers {
					for _, e := range c.Env {
						if e.ValueFrom == nil {
							continue
						}
						if ref := e.ValueFrom.SecretKeyRef; ref != nil {
							provided := false
							if s, ok := r.secrets[ref.Name]; ok {
								_, inData := s.Data[ref.Key]
								_, inString := s.StringData[ref.Key]
								provided = inData || inString
							}
							if !provided && !slices.Contains(external[overlay], ref.Name+"/"+ref.Key) {
								t.Errorf("%s: %s reads Secret %s key %s, which nothing provides", c.Name, e.Name, ref.Name, ref.Key)
							}
						}
						if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
							if cm, ok := r.configMaps[ref.Name]; !ok || cm.Data[ref.Key] == "" {
								t.Errorf("%s: %s reads ConfigMap %s key %s, which is not rendered", c.Name, e.Name, ref.Name, ref.Key)
							}
						}
					}
					for _, from := range c.EnvFrom {
						if from.ConfigMapRef != nil && r.configMaps[from.ConfigMapRef.Name] == nil {
							t.Errorf("%s: envFrom ConfigMap %s is not rendered", c.Name, from.ConfigMapRef.Name)
						}
						if from.SecretRef != nil && r.secrets[from.SecretRef.Name] == nil {
							t.Errorf("%s: envFrom Secret %s is not rendered", c.Name, from.SecretRef.Name)
						}
					}
				}
			}
			if dev := r.configMaps["payonce-env"].Data["PAYONCE_DEV_MODE"]; (overlay == "dev") != (dev == "true") {
				t.Errorf("PAYONCE_DEV_MODE=%q in %s: only dev accepts the demo keys", dev, overlay)
			}
			if overlay == "production" {
				if len(r.secrets) != 0 {
					t.Errorf("production renders Secrets %v: credentials do not belong in the repository", keys(r.secrets))
				}
				for _, db := range []string{"orders", "payments"} {
					c, ok := r.cnpgClusters[db+"-db"]
					if !ok || c.Spec.Instances != 3 || c.Spec.Bootstrap.InitDB.Database != db ||
						c.Spec.InheritedMetadata.Labels["app.kubernetes.io/name"] != "postgres" {
						t.Errorf("CloudNativePG Cluster %s-db: %+v; want 3 instances of database %s, pods labelled as postgres", db, c, db)
					}
				}
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The flows the architecture draws (docs/kubernetes.md, "Network flows"),
// as "from->to:port/protocol". "outside" is anything that is not a pod of
// the namespace (a client, the Kubernetes API server); kube-dns and
// cnpg-operator are the cluster's DNS and the CloudNativePG operator.
var (
	commonFlows = []string{
		"outside->orders:8080/TCP", "outside->payments:8090/TCP",
		"orders->orders:8080/TCP", "orders->payments:8090/TCP", "orders->postgres:5432/TCP", "orders->nats:4222/TCP", "orders->coordinator:8080/TCP", "orders->jaeger:4318/TCP",
		"payments->payments:8090/TCP", "payments->postgres:5432/TCP", "payments->nats:4222/TCP", "payments->coordinator:8080/TCP",
		"payments->bank:8099/TCP", "payments->jaeger:4318/TCP",
		"coordinator->coordinator:7000/TCP", "coordinator->coordinator:8080/TCP", "coordinator->jaeger:4318/TCP",
		"bank->jaeger:4318/TCP",
		"migrate->postgres:5432/TCP",
	}
	productionFlows = []string{
		"postgres->postgres:5432/TCP", "cnpg-operator->postgres:5432/TCP", "cnpg-operator->postgres:8000/TCP",
		"postgres->outside:443/TCP", "postgres->outside:6443/TCP",
		"nats->nats:6222/TCP",
	}
)

// party is a source or destination of traffic.
type party struct {
	name      string
	namespace string
	labels    map[string]string
	nsLabels  map[string]string
}

const namespace = "payonce"

func inNamespace(name string) party {
	return party{name: name, namespace: namespace, labels: map[string]string{"app.kubernetes.io/name": name},
		nsLabels: map[string]string{"kubernetes.io/metadata.name": namespace}}
}

// TestNetworkPoliciesAllowExactlyTheArchitecture derives, from the rendered
// NetworkPolicies, every flow between the namespace's pods (and to and from
// the cluster's DNS, the CloudNativePG operator and the outside) that both
// the sender's egress and the receiver's ingress allow, and compares it
// with the table: a flow the docs do not draw fails, and so does a drawn
// flow the policies block.
func TestNetworkPoliciesAllowExactlyTheArchitecture(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			pods := map[string]party{}
			for _, d := range r.deployments {
				pods[d.Spec.Template.Labels["app.kubernetes.io/name"]] = inNamespace(d.Spec.Template.Labels["app.kubernetes.io/name"])
			}
			for _, s := range r.statefulSets {
				pods[s.Spec.Template.Labels["app.kubernetes.io/name"]] = inNamespace(s.Spec.Template.Labels["app.kubernetes.io/name"])
			}
			for _, j := range r.jobs {
				pods[j.Spec.Template.Labels["app.kubernetes.io/name"]] = inNamespace(j.Spec.Template.Labels["app.kubernetes.io/name"])
			}
			want := slices.Clone(commonFlows)
			if overlay == "production" {
				// Pods not rendered here: CloudNativePG's instances (labelled
				// through inheritedMetadata), the NATS chart's servers, and the
				// operator's own trace collector, answering as jaeger.
				for _, name := range []string{"postgres", "nats", "jaeger"} {
					pods[name] = inNamespace(name)
				}
				want = append(want, productionFlows...)
			}
			if len(pods) != 8 {
				t.Fatalf("pods %v: want orders, payments, bank, coordinator, migrate, postgres, nats, jaeger", keys(pods))
			}
			for name := range pods {
				want = append(want, name+"->kube-dns:53/UDP", name+"->kube-dns:53/TCP")
			}
			others := []party{
				{name: "kube-dns", namespace: "kube-system", labels: map[string]string{"k8s-app": "kube-dns"},
					nsLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
				{name: "cnpg-operator", namespace: "cnpg-system", labels: map[string]string{"app.kubernetes.io/name": "cloudnative-pg"},
					nsLabels: map[string]string{"kubernetes.io/metadata.name": "cnpg-system"}},
			}
			outside := party{name: "outside"}

			var ports []networkingv1.NetworkPolicyPort
			for _, p := range r.policies {
				for _, rule := range p.Spec.Ingress {
					ports = append(ports, rule.Ports...)
				}
				for _, rule := range p.Spec.Egress {
					ports = append(ports, rule.Ports...)
				}
			}
			var got []string
			add := func(from, to party, port networkingv1.NetworkPolicyPort) {
				flow := fmt.Sprintf("%s->%s:%d/%s", from.name, to.name, port.Port.IntVal, protocol(port))
				if !slices.Contains(got, flow) {
					got = append(got, flow)
				}
			}
			for _, port := range ports {
				for _, from := range pods {
					for _, to := range pods {
						if allowed(r.policies, from, to, port, true) && allowed(r.policies, to, from, port, false) {
							add(from, to, port)
						}
					}
					// To parties outside the namespace: only the sender's egress is ours.
					for _, to := range append(others, outside) {
						if allowed(r.policies, from, to, port, true) {
							add(from, to, port)
						}
					}
					for _, src := range append(others, outside) {
						if allowedFromNamed(r.policies, from, src, port) {
							add(src, from, port)
						}
					}
				}
			}
			sort.Strings(got)
			sort.Strings(want)
			for _, f := range got {
				if !slices.Contains(want, f) {
					t.Errorf("the policies allow %s, which the architecture does not draw", f)
				}
			}
			for _, f := range want {
				if !slices.Contains(got, f) {
					t.Errorf("the architecture draws %s, which the policies block", f)
				}
			}
		})
	}
}

// allowed reports whether the policies selecting pod let traffic to (egress)
// or from (ingress) peer on port through. A pod no policy of that direction
// selects is not isolated; here default-deny selects every pod.
func allowed(policies []*networkingv1.NetworkPolicy, pod, peer party, port networkingv1.NetworkPolicyPort, egress bool) bool {
	isolated := false
	for _, p := range policies {
		if !matches(p.Spec.PodSelector.MatchLabels, pod.labels) || pod.namespace != namespace {
			continue
		}
		wantType := networkingv1.PolicyTypeIngress
		if egress {
			wantType = networkingv1.PolicyTypeEgress
		}
		if !slices.Contains(p.Spec.PolicyTypes, wantType) {
			continue
		}
		isolated = true
		if egress {
			for _, rule := range p.Spec.Egress {
				if portsMatch(rule.Ports, port) && peersMatch(rule.To, peer, true) {
					return true
				}
			}
		} else {
			for _, rule := range p.Spec.Ingress {
				if portsMatch(rule.Ports, port) && peersMatch(rule.From, peer, false) {
					return true
				}
			}
		}
	}
	return !isolated
}

// allowedFromNamed reports ingress to pod from a party outside the
// namespace. A rule with no `from` admits anyone, which the table calls
// "outside"; a named party (the CNPG operator) must be selected by name.
func allowedFromNamed(policies []*networkingv1.NetworkPolicy, pod, src party, port networkingv1.NetworkPolicyPort) bool {
	for _, p := range policies {
		if !matches(p.Spec.PodSelector.MatchLabels, pod.labels) || !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		for _, rule := range p.Spec.Ingress {
			if !portsMatch(rule.Ports, port) {
				continue
			}
			if len(rule.From) == 0 {
				if src.name == "outside" {
					return true
				}
				continue
			}
			if src.name != "outside" && peersMatch(rule.From, src, false) {
				return true
			}
		}
	}
	return false
}

// peersMatch: an empty list admits every peer; otherwise one entry must
// select it. A pod selector alone means this namespace; with a namespace
// selector, the namespaces it selects. ipBlocks (and an empty list) reach
// "outside".
func peersMatch(peers []networkingv1.NetworkPolicyPeer, peer party, _ bool) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if peer.name == "outside" {
			if p.IPBlock != nil {
				return true
			}
			continue
		}
		if p.IPBlock != nil {
			continue
		}
		if p.NamespaceSelector == nil {
			if peer.namespace != namespace {
				continue
			}
		} else if !matches(p.NamespaceSelector.MatchLabels, peer.nsLabels) {
			continue
		}
		if p.PodSelector == nil || matches(p.PodSelector.MatchLabels, peer.labels) {
			return true
		}
	}
	return false
}

func portsMatch(rulePorts []networkingv1.NetworkPolicyPort, port networkingv1.NetworkPolicyPort) bool {
	if len(rulePorts) == 0 {
		return true
	}
	for _, p := range rulePorts {
		if protocol(p) == protocol(port) && p.Port != nil && port.Port != nil && p.Port.IntVal == port.Port.IntVal {
			return true
		}
	}
	return false
}

func protocol(p networkingv1.NetworkPolicyPort) corev1.Protocol {
	if p.Protocol == nil {
		return corev1.ProtocolTCP
	}
	return *p.Protocol
}

// TestCoordinatorRunsWithoutTLSOnlyInDevMode: a coordinator node without
// TLS_* refuses to start unless PAYONCE_DEV_MODE is set (F0 of #11). The
// dev overlay, a laptop cluster with no certificates, sets it on the
// coordinator explicitly; production sets it nowhere, so its nodes run
// with the certificates the operator mounts or not at all.
func TestCoordinatorRunsWithoutTLSOnlyInDevMode(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			sts, ok := r.statefulSets["coordinator"]
			if !ok {
				t.Fatal("no coordinator StatefulSet")
			}
			c := container(t, &sts.Spec.Template, "coordinator")
			dev := envVar(c, "PAYONCE_DEV_MODE")
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef != nil && r.configMaps[from.ConfigMapRef.Name].Data["PAYONCE_DEV_MODE"] != "" {
					t.Errorf("the coordinator reads PAYONCE_DEV_MODE from ConfigMap %s: set it on the coordinator alone, in dev only", from.ConfigMapRef.Name)
				}
			}
			switch overlay {
			case "dev":
				if dev == nil || dev.Value != "true" {
					t.Errorf("dev overlay: the coordinator's PAYONCE_DEV_MODE is %+v; without it (and without certificates) no node starts", dev)
				}
			default:
				if dev != nil {
					t.Errorf("%s overlay: the coordinator sets PAYONCE_DEV_MODE=%+v: it would run without TLS, open to anyone who reaches it", overlay, dev)
				}
			}
		})
	}
}
