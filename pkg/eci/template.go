// Package eci renders ferry's Jenkins agent pods for Alibaba Cloud's
// Elastic Container Instances (ACK virtual nodes, ACS) and classifies why an
// agent pod failed.
//
// A Template is the runtime form of an agent template from ferry's config:
// the config embeds it directly, so every field carries a camelCase JSON tag
// (read by ferry's YAML loader). Templates may inherit from one another;
// Resolve merges them, applies defaults and validates the result. Render
// turns a resolved template and an Agent (one attempt at serving one Jenkins
// queue item) into a Pod; RenderSecret makes the Secret holding the JNLP
// secrets of the agents created together, which the pods read their own
// key of.
// Classify reads a pod's status, conditions and events and says what went
// wrong, whether another attempt may help and whether a fallback should be
// used for it.
//
// Retries and fallbacks work together. Each queue item gets at most
// Retry.MaxAttempts attempts (the provisioner does not count an agent whose
// build Jenkins gave to another item), named AgentName(queueID, attempt)
// and spaced by Retry.Delay. An attempt whose predecessor failed with Failure.Fallback set
// goes one fallback level up: level N applies Template.Fallbacks[0..N-1]
// in order (drop or replace specs, go on-demand, rotate or replace
// vSwitches), so a template says in its config what "try something else"
// means for it.
package eci

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Defaults of a template; every one can be overridden.
const (
	// DefaultImage is the inbound agent image. It is pinned to a release
	// (remoting 3385, JDK 21) rather than latest-jdk21 so that agents do
	// not change under a running installation, the ECI image cache keeps
	// matching the same layers, and a rollback is a config change. Pin a
	// digest, or mirror it to ACR and set eci.acrInstanceID, in production.
	DefaultImage = "jenkins/inbound-agent:3385.vf1123fb_515da_-1-jdk21"
	// DefaultWorkDir is the inbound agent's remoting work directory; it is
	// under the workspace volume mounted at AgentHome.
	DefaultWorkDir = AgentHome + "/agent"
	// AgentHome is the jenkins user's home in the inbound-agent image. The
	// default workspace volume is mounted there, so HOME, the remoting
	// cache (~/.jenkins) and the work directory are all writable with a
	// read-only root filesystem.
	AgentHome = "/home/jenkins"
	// AgentUID is the uid (and gid) of the jenkins user in the
	// inbound-agent image.
	AgentUID int64 = 1000

	DefaultPendingTimeout         = 5 * time.Minute
	DefaultConnectTimeout         = 2 * time.Minute
	DefaultActiveDeadline         = 2 * time.Hour
	DefaultTerminationGracePeriod = 10 * time.Second
	DefaultMaxAttempts            = 3
	DefaultBackoff                = 5 * time.Second
	DefaultMaxBackoff             = time.Minute
	// DefaultFailStrategy makes ECI fail a pod at once instead of retrying
	// behind a Pending pod, so ferry sees ProviderFailed and can fall back
	// to another spec or zone itself, within its own limits.
	DefaultFailStrategy = FailFast
)

// DefaultResources match ECI's default spec (2 vCPU, 4 GiB): ECI rounds
// requests up to a spec anyway, so asking for less saves nothing.
func DefaultResources() corev1.ResourceRequirements {
	rl := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("4Gi"),
	}
	return corev1.ResourceRequirements{Requests: rl, Limits: rl.DeepCopy()}
}

// Template describes the agents ferry starts for builds waiting on one of
// its Jenkins labels.
//
// Inheritance (Resolve) merges a child over its parent with one rule per
// kind of field: a scalar set in the child wins; maps and lists keyed by a
// name (env by name, volumes by name, volume mounts by mount path, resources
// by resource name, sidecars by name, node selector, pod labels and
// annotations by key) are
// merged, the child winning per key; other lists (tolerations, image pull
// secrets, specs, vSwitches, fallbacks, capabilities) are replaced as a whole
// when the child sets them. Name and Labels are never inherited: two
// templates serving the same label would be ambiguous.
//
// Zero values mean "not set" and are filled with defaults (WithDefaults), so
// durations and counts cannot be set to zero to disable them: an agent
// without a pending timeout or a deadline is exactly the leak ferry exists
// to prevent.
type Template struct {
	// Name identifies the template in pod labels, metrics and inheritance;
	// a DNS label (lower-case letters, digits, '-', at most 63).
	Name string `json:"name"`
	// Inherits names the template this one is based on.
	Inherits string `json:"inherits,omitempty"`
	// Labels are the Jenkins labels whose builds this template serves; a
	// template without labels only serves as a base for others.
	Labels []string `json:"labels,omitempty"`

	// Image is the agent image, built on jenkins/inbound-agent.
	Image string `json:"image,omitempty"`
	// ImagePullPolicy defaults to IfNotPresent.
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// ImagePullSecrets name Secrets in the agents' namespace.
	ImagePullSecrets []string `json:"imagePullSecrets,omitempty"`
	// Resources of the agent container; default 2 CPU / 4Gi.
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`
	// Env adds variables to the agent container; the variables ferry sets
	// itself (JENKINS_URL, JENKINS_SECRET, …) cannot be overridden.
	Env []corev1.EnvVar `json:"env,omitempty"`
	// Volumes are added to the pod. Two emptyDir volumes are always there
	// unless a volume of the same name replaces them: "workspace", mounted
	// at /home/jenkins, and "tmp", mounted at /tmp.
	Volumes []Volume `json:"volumes,omitempty"`
	// VolumeMounts are added to the agent container; one with the mount
	// path of a default mount replaces it.
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`

	// VirtualNode (default true) steers the pod to ACK virtual nodes: node
	// selector type=virtual-kubelet, a toleration of their
	// virtual-kubelet.io/provider=alibabacloud:NoSchedule taint and the pod
	// label alibabacloud.com/eci=true. Set false on clusters whose every
	// pod runs on ECI anyway, or to run agents on ordinary nodes.
	VirtualNode *bool `json:"virtualNode,omitempty"`
	// NodeSelector adds node labels the pod must match.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations are added to the pod's.
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// PodLabels and PodAnnotations are added to the pod. ferry's own keys
	// and the ECI annotations rendered from ECI cannot be set here.
	PodLabels      map[string]string `json:"podLabels,omitempty"`
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`

	// ServiceAccountName runs the pod as this service account.
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// AutomountServiceAccountToken mounts the service account's token;
	// default false: a build does not get Kubernetes credentials unless
	// its template asks for them.
	AutomountServiceAccountToken *bool `json:"automountServiceAccountToken,omitempty"`
	// Security loosens the secure defaults where an image needs it.
	Security Security `json:"security,omitzero"`
	// WorkDir is the agent's remoting work directory
	// (JENKINS_AGENT_WORKDIR); default /home/jenkins/agent.
	WorkDir string `json:"workDir,omitempty"`

	// PendingTimeout bounds how long a pod may stay Pending; default 5m.
	PendingTimeout Duration `json:"pendingTimeout,omitzero"`
	// ConnectTimeout bounds how long a running agent may take to connect
	// to Jenkins; default 2m.
	ConnectTimeout Duration `json:"connectTimeout,omitzero"`
	// ActiveDeadline is the hard upper bound of an agent pod's life
	// (activeDeadlineSeconds), whatever ferry does; default 2h.
	ActiveDeadline Duration `json:"activeDeadline,omitzero"`
	// TerminationGracePeriod is short by default (10s): the build is over
	// when ferry deletes an agent, and ECI bills until the pod is gone.
	TerminationGracePeriod Duration `json:"terminationGracePeriod,omitzero"`
	// MaxAgents caps this template's concurrent agents; 0 means only the
	// global cap applies.
	MaxAgents int `json:"maxAgents,omitempty"`
	// Retry bounds new attempts after a failed agent pod.
	Retry Retry `json:"retry,omitzero"`
	// Fallbacks are applied, cumulatively and in order, to later attempts
	// whose predecessor failed in a way another shape may avoid (see
	// Fallback and AtFallback).
	Fallbacks []Fallback `json:"fallbacks,omitempty"`
	// ECI settings, rendered as k8s.aliyun.com/ pod annotations.
	ECI ECI `json:"eci,omitzero"`
	// Sidecars run beside the agent container in its pod (see Sidecar);
	// inheritance merges them by name, the child's replacing the parent's.
	Sidecars []Sidecar `json:"sidecars,omitempty"`
	// WarmPool keeps ready agents of this template waiting for builds
	// (see WarmPool); it is not inherited.
	WarmPool *WarmPool `json:"warmPool,omitempty"`
}

// Volume is a pod volume: a name and one source, written as in a pod
// spec. It stands in for corev1.Volume, which embeds its source without an
// inline tag: encoding/json flattens it, but YAML decoders that only honour
// ",inline" (like ferry's config loader) would not.
type Volume struct {
	Name                string `json:"name"`
	corev1.VolumeSource `json:",inline"`
}

// Core returns the Kubernetes form of the volume.
func (v Volume) Core() corev1.Volume {
	return corev1.Volume{Name: v.Name, VolumeSource: *v.VolumeSource.DeepCopy()}
}

// DeepCopy copies the volume. It hides the embedded source's DeepCopy,
// which would copy the source alone.
func (v Volume) DeepCopy() *Volume {
	return &Volume{Name: v.Name, VolumeSource: *v.VolumeSource.DeepCopy()}
}

// Security overrides the agent's secure defaults: uid/gid 1000 (the
// inbound-agent's jenkins user), runAsNonRoot, a read-only root filesystem,
// no privilege escalation, every capability dropped, seccomp RuntimeDefault.
// A daemonless image builder such as kaniko, for instance, needs root, a
// writable root filesystem and a few capabilities back.
type Security struct {
	// RunAsUser defaults to 1000, RunAsGroup to RunAsUser and FSGroup to
	// RunAsGroup.
	RunAsUser  *int64 `json:"runAsUser,omitempty"`
	RunAsGroup *int64 `json:"runAsGroup,omitempty"`
	FSGroup    *int64 `json:"fsGroup,omitempty"`
	// RunAsNonRoot defaults to true.
	RunAsNonRoot *bool `json:"runAsNonRoot,omitempty"`
	// ReadOnlyRootFilesystem defaults to true; the workspace (HOME) and
	// /tmp are writable volumes.
	ReadOnlyRootFilesystem *bool `json:"readOnlyRootFilesystem,omitempty"`
	// AddCapabilities are given back after dropping ALL, e.g. CHOWN.
	AddCapabilities []corev1.Capability `json:"addCapabilities,omitempty"`
}

// Retry bounds the attempts made for one queue item.
type Retry struct {
	// MaxAttempts is the number of agent pods tried for one queue item,
	// the first included; default 3.
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// Backoff is the wait before the second attempt, doubled for each
	// further one; default 5s.
	Backoff Duration `json:"backoff,omitzero"`
	// MaxBackoff caps the wait; default 1m.
	MaxBackoff Duration `json:"maxBackoff,omitzero"`
}

// Delay returns how long to wait before attempt number attempt (the first
// attempt is 1 and starts at once).
func (r Retry) Delay(attempt int) time.Duration {
	if attempt <= 1 {
		return 0
	}
	d, limit := r.Backoff.Duration, r.MaxBackoff.Duration
	for i := 2; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Fallback is a change to a template's ECI settings used for an attempt
// whose predecessor failed in a way another shape may avoid (no stock, a
// spot reclaim, a provider failure, a pending timeout; see
// Failure.Fallback). Fallback level N applies the first N fallbacks in
// order, so they accumulate: with [{onDemand: true}, {dropSpecs: 1}], level
// 1 is on-demand and level 2 is on-demand on the remaining specs. Levels
// beyond the list apply all of it. Within one fallback the changes apply in
// field order.
type Fallback struct {
	// Specs replaces eci.specs.
	Specs []string `json:"specs,omitempty"`
	// DropSpecs removes this many specs from the front of eci.specs, so
	// ECI starts with the next ones.
	DropSpecs int `json:"dropSpecs,omitempty"`
	// OnDemand turns spot off (strategy, price limit, duration, fallback).
	OnDemand bool `json:"onDemand,omitempty"`
	// VSwitches replaces eci.vSwitches.
	VSwitches []string `json:"vSwitches,omitempty"`
	// RotateVSwitches moves this many vSwitches from the front of
	// eci.vSwitches to the back, so ECI tries other zones first.
	RotateVSwitches int `json:"rotateVSwitches,omitempty"`
}

// Spot strategies (eci-spot-strategy).
const (
	SpotAsPriceGo      = "SpotAsPriceGo"
	SpotWithPriceLimit = "SpotWithPriceLimit"
)

// vSwitch schedule strategies (eci-schedule-strategy).
const (
	VSwitchOrdered = "VSwitchOrdered"
	VSwitchRandom  = "VSwitchRandom"
)

// Fail strategies (eci-fail-strategy).
const (
	FailBack = "fail-back"
	FailOver = "fail-over"
	FailFast = "fail-fast"
)

// ECI holds the settings rendered as k8s.aliyun.com/ annotations. ECI reads
// them only when a pod is created.
type ECI struct {
	// Specs are tried in order (eci-use-specs): vCPU-memory like "2-4Gi"
	// or ECS instance types like "ecs.c6.xlarge"; at most 5.
	Specs []string `json:"specs,omitempty"`
	// SpotStrategy makes agents spot instances: SpotAsPriceGo or
	// SpotWithPriceLimit (with SpotPriceLimit). Empty: pay-as-you-go.
	SpotStrategy string `json:"spotStrategy,omitempty"`
	// SpotPriceLimit is the highest hourly price, at most 3 decimals.
	SpotPriceLimit Price `json:"spotPriceLimit,omitempty"`
	// SpotDuration is the protected period in hours; ECI's default is 1,
	// 0 means none.
	SpotDuration *int `json:"spotDuration,omitempty"`
	// SpotFallback lets ECI create a pay-as-you-go instance when no spot
	// stock is left (eci-spot-fallback).
	SpotFallback *bool `json:"spotFallback,omitempty"`
	// AutoImageCache (default true unless ImageCacheID is set) lets ECI
	// match or create an image cache (eci-auto-imc).
	AutoImageCache *bool `json:"autoImageCache,omitempty"`
	// ImageCacheID pins an image cache, imc-… (eci-imc-id).
	ImageCacheID string `json:"imageCacheID,omitempty"`
	// VSwitches are vsw-… ids; several spread agents over zones.
	VSwitches []string `json:"vSwitches,omitempty"`
	// ScheduleStrategy picks among VSwitches: VSwitchOrdered or
	// VSwitchRandom.
	ScheduleStrategy string `json:"scheduleStrategy,omitempty"`
	// SecurityGroup is an sg-… id.
	SecurityGroup string `json:"securityGroup,omitempty"`
	// RAMRoleName gives the pod STS credentials of this RAM role, e.g. to
	// push images to ACR.
	RAMRoleName string `json:"ramRoleName,omitempty"`
	// ExtraEphemeralStorage adds disk beyond the free 30 GiB, e.g. "50Gi".
	ExtraEphemeralStorage string `json:"extraEphemeralStorage,omitempty"`
	// FailStrategy is fail-fast (ferry's default: failures show as
	// ProviderFailed at once), fail-back or fail-over.
	FailStrategy string `json:"failStrategy,omitempty"`
	// ACRInstanceID (cri-…) pulls from ACR Enterprise without a secret.
	ACRInstanceID string `json:"acrInstanceID,omitempty"`
	// WithEIP gives the pod a public IP; a NAT gateway is usually better.
	WithEIP *bool `json:"withEIP,omitempty"`
}

// Price is a decimal price kept as written, so "0.068" is not turned into
// a float and back. It may be written as a YAML/JSON number or string.
type Price string

// UnmarshalJSON accepts a number or a string.
func (p *Price) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*p = Price(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("%s is not a price: write it like 0.05", string(b))
	}
	*p = Price(n.String())
	return nil
}

// Duration is a time.Duration written as "30s" or "5m" in YAML, like
// ferry's config durations.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a Go duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration: write it like 30s, 5m or 2h", s)
		}
		d.Duration = v
		return nil
	}
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("%s is not a duration: write it like 30s, 5m or 2h", string(b))
	}
	d.Duration = time.Duration(n * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Serves reports whether the template serves builds waiting on label.
func (t Template) Serves(label string) bool { return slices.Contains(t.Labels, label) }

// WithDefaults returns the template with every unset field defaulted. It
// is idempotent and does not modify t.
func (t Template) WithDefaults() Template {
	t = t.clone()
	if t.Image == "" {
		t.Image = DefaultImage
	}
	if t.ImagePullPolicy == "" {
		t.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if t.Resources.Requests == nil && t.Resources.Limits == nil {
		t.Resources = DefaultResources()
	}
	if t.VirtualNode == nil {
		t.VirtualNode = ptr(true)
	}
	if t.AutomountServiceAccountToken == nil {
		t.AutomountServiceAccountToken = ptr(false)
	}
	s := &t.Security
	if s.RunAsUser == nil {
		s.RunAsUser = ptr(AgentUID)
	}
	if s.RunAsGroup == nil {
		s.RunAsGroup = ptr(*s.RunAsUser)
	}
	if s.FSGroup == nil {
		s.FSGroup = ptr(*s.RunAsGroup)
	}
	if s.RunAsNonRoot == nil {
		s.RunAsNonRoot = ptr(*s.RunAsUser != 0)
	}
	if s.ReadOnlyRootFilesystem == nil {
		s.ReadOnlyRootFilesystem = ptr(true)
	}
	if t.WorkDir == "" {
		t.WorkDir = DefaultWorkDir
	}
	for _, d := range []struct {
		f *Duration
		v time.Duration
	}{
		{&t.PendingTimeout, DefaultPendingTimeout},
		{&t.ConnectTimeout, DefaultConnectTimeout},
		{&t.ActiveDeadline, DefaultActiveDeadline},
		{&t.TerminationGracePeriod, DefaultTerminationGracePeriod},
		{&t.Retry.Backoff, DefaultBackoff},
		{&t.Retry.MaxBackoff, DefaultMaxBackoff},
	} {
		if d.f.Duration == 0 {
			d.f.Duration = d.v
		}
	}
	if t.Retry.MaxAttempts == 0 {
		t.Retry.MaxAttempts = DefaultMaxAttempts
	}
	if t.ECI.FailStrategy == "" {
		t.ECI.FailStrategy = DefaultFailStrategy
	}
	if t.ECI.AutoImageCache == nil && t.ECI.ImageCacheID == "" {
		t.ECI.AutoImageCache = ptr(true)
	}
	return t
}

// clone returns a deep copy, so defaults, fallbacks and merges never write
// into a caller's maps or slices.
func (t Template) clone() Template {
	c := t
	c.Labels = slices.Clone(t.Labels)
	c.ImagePullSecrets = slices.Clone(t.ImagePullSecrets)
	c.Resources = *t.Resources.DeepCopy()
	c.Env = deepCopyAll(t.Env)
	c.Volumes = cloneVolumes(t.Volumes)
	c.VolumeMounts = deepCopyAll(t.VolumeMounts)
	c.Tolerations = deepCopyAll(t.Tolerations)
	c.NodeSelector = maps.Clone(t.NodeSelector)
	c.PodLabels = maps.Clone(t.PodLabels)
	c.PodAnnotations = maps.Clone(t.PodAnnotations)
	c.VirtualNode = clonePtr(t.VirtualNode)
	c.AutomountServiceAccountToken = clonePtr(t.AutomountServiceAccountToken)
	c.Security = Security{
		RunAsUser:              clonePtr(t.Security.RunAsUser),
		RunAsGroup:             clonePtr(t.Security.RunAsGroup),
		FSGroup:                clonePtr(t.Security.FSGroup),
		RunAsNonRoot:           clonePtr(t.Security.RunAsNonRoot),
		ReadOnlyRootFilesystem: clonePtr(t.Security.ReadOnlyRootFilesystem),
		AddCapabilities:        slices.Clone(t.Security.AddCapabilities),
	}
	c.Fallbacks = make([]Fallback, len(t.Fallbacks))
	for i, f := range t.Fallbacks {
		f.Specs = slices.Clone(f.Specs)
		f.VSwitches = slices.Clone(f.VSwitches)
		c.Fallbacks[i] = f
	}
	if t.Fallbacks == nil {
		c.Fallbacks = nil
	}
	c.ECI = t.ECI.clone()
	c.Sidecars = cloneSidecars(t.Sidecars)
	if t.WarmPool != nil {
		w := *t.WarmPool
		w.Schedule = slices.Clone(w.Schedule)
		w.ExcludeDates = slices.Clone(w.ExcludeDates)
		c.WarmPool = &w
	}
	return c
}

func (e ECI) clone() ECI {
	c := e
	c.Specs = slices.Clone(e.Specs)
	c.VSwitches = slices.Clone(e.VSwitches)
	c.SpotDuration = clonePtr(e.SpotDuration)
	c.SpotFallback = clonePtr(e.SpotFallback)
	c.AutoImageCache = clonePtr(e.AutoImageCache)
	c.WithEIP = clonePtr(e.WithEIP)
	return c
}

// AtFallback returns the template as used at fallback level (see
// Fallback). Level 0, or a template without fallbacks, is the template
// itself; levels beyond the list apply all of it.
func (t Template) AtFallback(level int) Template {
	t = t.clone()
	for i := 0; i < level && i < len(t.Fallbacks); i++ {
		t.ECI = t.Fallbacks[i].apply(t.ECI)
	}
	return t
}

// FallbackLevels is the highest fallback level that changes anything.
func (t Template) FallbackLevels() int { return len(t.Fallbacks) }

func (f Fallback) apply(e ECI) ECI {
	e = e.clone()
	if f.Specs != nil {
		e.Specs = slices.Clone(f.Specs)
	}
	if f.DropSpecs > 0 {
		e.Specs = e.Specs[min(f.DropSpecs, len(e.Specs)):]
	}
	if f.OnDemand {
		e.SpotStrategy, e.SpotPriceLimit, e.SpotDuration, e.SpotFallback = "", "", nil, nil
	}
	if f.VSwitches != nil {
		e.VSwitches = slices.Clone(f.VSwitches)
	}
	if n := len(e.VSwitches); f.RotateVSwitches > 0 && n > 0 {
		k := f.RotateVSwitches % n
		e.VSwitches = slices.Concat(e.VSwitches[k:], e.VSwitches[:k])
	}
	return e
}

func cloneVolumes(in []Volume) []Volume {
	if in == nil {
		return nil
	}
	out := make([]Volume, len(in))
	for i, v := range in {
		out[i] = *v.DeepCopy()
	}
	return out
}

type deepCopier[T any] interface{ DeepCopy() *T }

func deepCopyAll[T any, P interface {
	*T
	deepCopier[T]
}](in []T) []T {
	if in == nil {
		return nil
	}
	out := make([]T, len(in))
	for i := range in {
		out[i] = *P(&in[i]).DeepCopy()
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
