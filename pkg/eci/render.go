package eci

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const ferryPrefix = "ferry.dev/"

// Labels and annotations on everything ferry creates for an agent.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "ferry"
	LabelAgent     = ferryPrefix + "agent"
	LabelQueueID   = ferryPrefix + "queue-id"
	LabelTemplate  = ferryPrefix + "template"
	LabelAttempt   = ferryPrefix + "attempt"

	AnnotationJob         = ferryPrefix + "job"
	AnnotationTraceParent = ferryPrefix + "traceparent"
	// AnnotationFallback records the fallback level an agent was rendered
	// at (absent at level 0).
	AnnotationFallback = ferryPrefix + "fallback"
	// AnnotationOnDemand marks an agent made on-demand instead of spot
	// because its build is a re-run after infrastructure loss.
	AnnotationOnDemand = ferryPrefix + "on-demand"
)

// ManagedSelector selects every object ferry created for agents; use it for
// informers and garbage collection.
const ManagedSelector = LabelManagedBy + "=" + ManagedBy

// ACK virtual nodes: how a pod is steered to ECI.
const (
	VirtualNodeLabel      = "type"
	VirtualNodeValue      = "virtual-kubelet"
	VirtualNodeTaintKey   = "virtual-kubelet.io/provider"
	VirtualNodeTaintValue = "alibabacloud"
	// LabelECI on a pod makes ACK run it on ECI.
	LabelECI = "alibabacloud.com/eci"
)

// Names inside the agent pod.
const (
	// ContainerName is the agent container's, as in Jenkins' kubernetes
	// plugin.
	ContainerName   = "jnlp"
	VolumeWorkspace = "workspace"
	VolumeTmp       = "tmp"

	defaultWorkspaceMount = AgentHome
	defaultTmpMount       = "/tmp"
)

const (
	eciAnnotationPrefix     = "k8s.aliyun.com/"
	annotationSpecs         = eciAnnotationPrefix + "eci-use-specs"
	annotationSpotStrategy  = eciAnnotationPrefix + "eci-spot-strategy"
	annotationSpotPrice     = eciAnnotationPrefix + "eci-spot-price-limit"
	annotationSpotDuration  = eciAnnotationPrefix + "eci-spot-duration"
	annotationSpotFallback  = eciAnnotationPrefix + "eci-spot-fallback"
	annotationAutoIMC       = eciAnnotationPrefix + "eci-auto-imc"
	annotationIMCID         = eciAnnotationPrefix + "eci-imc-id"
	annotationVSwitch       = eciAnnotationPrefix + "eci-vswitch"
	annotationSchedule      = eciAnnotationPrefix + "eci-schedule-strategy"
	annotationSecurityGroup = eciAnnotationPrefix + "eci-security-group"
	annotationRAMRole       = eciAnnotationPrefix + "eci-ram-role-name"
	annotationExtraStorage  = eciAnnotationPrefix + "eci-extra-ephemeral-storage"
	annotationFailStrategy  = eciAnnotationPrefix + "eci-fail-strategy"
	annotationACRInstance   = eciAnnotationPrefix + "acr-instance-id"
	annotationWithEIP       = eciAnnotationPrefix + "eci-with-eip"
)

// ECIAnnotations lists every annotation rendered from ECI settings; a
// template's podAnnotations cannot set them.
var ECIAnnotations = []string{
	annotationSpecs, annotationSpotStrategy, annotationSpotPrice, annotationSpotDuration,
	annotationSpotFallback, annotationAutoIMC, annotationIMCID, annotationVSwitch,
	annotationSchedule, annotationSecurityGroup, annotationRAMRole, annotationExtraStorage,
	annotationFailStrategy, annotationACRInstance, annotationWithEIP,
}

// Environment of the agent container set by ferry.
const (
	EnvJenkinsURL  = "JENKINS_URL"
	EnvAgentName   = "JENKINS_AGENT_NAME"
	EnvSecret      = "JENKINS_SECRET"
	EnvWebSocket   = "JENKINS_WEB_SOCKET"
	EnvWorkDir     = "JENKINS_AGENT_WORKDIR"
	EnvTraceParent = "TRACEPARENT"
)

// Agent is one attempt at serving one Jenkins queue item: one Jenkins node
// and one pod of the same name. Its JNLP secret lives in a Secret (see
// RenderSecret) that may hold the secrets of other agents created with it.
type Agent struct {
	// Name names the Jenkins node and the pod; see AgentName.
	Name      string
	Namespace string
	// QueueID is the Jenkins queue item the agent serves.
	QueueID int64
	// Attempt counts from 1 for each queue item.
	Attempt int
	// Fallback is the template's fallback level for this attempt.
	Fallback int
	// OnDemand turns spot off whatever the level says: the agent of a
	// build re-run after its first agent was lost to infrastructure.
	OnDemand bool
	// JenkinsURL is the controller the agent connects to over WebSocket.
	JenkinsURL string
	// SecretName names the Secret holding the node's JNLP secret under the
	// key Name (see RenderSecret); the pod reads it from there, so the
	// secret never appears in the pod, a log line or an error.
	SecretName string
	// TraceParent is the W3C trace context of the build, when known.
	TraceParent string
	// Job is the Jenkins job path of the queue item, for people reading
	// the pod.
	Job string
	// Labels are the owner's labels (e.g. the ferry instance) put on the
	// pod and the Secret; ferry's own labels win over them.
	Labels map[string]string
}

// AgentName is the name of attempt attempt for queue item queueID. It is
// derived from the queue item alone so that a restarted ferry, or another
// replica, finds the agents already made instead of making them again.
func AgentName(queueID int64, attempt int) string {
	return fmt.Sprintf("ferry-agent-%d-%d", queueID, attempt)
}

// String describes the agent.
func (a Agent) String() string {
	return fmt.Sprintf("agent %s (queue item %d, attempt %d)", a.Name, a.QueueID, a.Attempt)
}

// GoString keeps %#v short.
func (a Agent) GoString() string { return a.String() }

// LogValue is what structured logs show of an agent.
func (a Agent) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", a.Name),
		slog.String("namespace", a.Namespace),
		slog.Int64("queue_id", a.QueueID),
		slog.Int("attempt", a.Attempt),
		slog.Int("fallback", a.Fallback),
	)
}

// Labels returns the labels ferry puts on agent a's pod (template t).
func Labels(t Template, a Agent) map[string]string {
	l := maps.Clone(a.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelManagedBy] = ManagedBy
	l[LabelAgent] = a.Name
	l[LabelQueueID] = strconv.FormatInt(a.QueueID, 10)
	l[LabelTemplate] = t.Name
	l[LabelAttempt] = strconv.Itoa(a.Attempt)
	return l
}

// Render returns the pod of agent a from template t at the agent's fallback
// level. t should come from Resolve; defaults are applied again here, so a
// template that was never resolved renders the same way.
//
// The pod reads JENKINS_SECRET from key a.Name of Secret a.SecretName:
// create that Secret (RenderSecret) before the pod, then hand it to the pod
// with OwnSecret so that it goes when the pod goes.
func Render(t Template, a Agent) *corev1.Pod {
	t = t.WithDefaults().AtFallback(a.Fallback)
	if a.OnDemand {
		t.ECI = Fallback{OnDemand: true}.apply(t.ECI)
	}
	labels := Labels(t, a)

	annotations := maps.Clone(t.PodAnnotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	maps.Copy(annotations, t.ECI.annotations())
	if a.Job != "" {
		annotations[AnnotationJob] = a.Job
	}
	if a.TraceParent != "" {
		annotations[AnnotationTraceParent] = a.TraceParent
	}
	if lvl := min(a.Fallback, t.FallbackLevels()); lvl > 0 {
		annotations[AnnotationFallback] = strconv.Itoa(lvl)
	}
	if a.OnDemand {
		annotations[AnnotationOnDemand] = "true"
	}

	podLabels := maps.Clone(t.PodLabels)
	if podLabels == nil {
		podLabels = map[string]string{}
	}
	nodeSelector := maps.Clone(t.NodeSelector)
	tolerations := deepCopyAll(t.Tolerations)
	if *t.VirtualNode {
		podLabels[LabelECI] = "true"
		if nodeSelector == nil {
			nodeSelector = map[string]string{}
		}
		nodeSelector[VirtualNodeLabel] = VirtualNodeValue
		vk := corev1.Toleration{Key: VirtualNodeTaintKey, Operator: corev1.TolerationOpEqual, Value: VirtualNodeTaintValue, Effect: corev1.TaintEffectNoSchedule}
		if !slices.ContainsFunc(tolerations, func(o corev1.Toleration) bool { return vk.MatchToleration(&o) }) {
			tolerations = append([]corev1.Toleration{vk}, tolerations...)
		}
	}
	maps.Copy(podLabels, labels)

	env := []corev1.EnvVar{
		{Name: EnvJenkinsURL, Value: a.JenkinsURL},
		{Name: EnvAgentName, Value: a.Name},
		{Name: EnvSecret, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: a.SecretName},
			Key:                  a.Name,
		}}},
		{Name: EnvWebSocket, Value: "true"},
		{Name: EnvWorkDir, Value: t.WorkDir},
	}
	if a.TraceParent != "" {
		env = append(env, corev1.EnvVar{Name: EnvTraceParent, Value: a.TraceParent})
	}
	env = append(env, deepCopyAll(t.Env)...)

	volumes := mergeKeyed([]corev1.Volume{
		{Name: VolumeWorkspace, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: VolumeTmp, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}, coreVolumes(t.Volumes), func(v corev1.Volume) string { return v.Name })
	mounts := mountsOf(t)

	var pullSecrets []corev1.LocalObjectReference
	for _, s := range t.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: s})
	}
	s := t.Security
	var addCaps []corev1.Capability
	if len(s.AddCapabilities) > 0 {
		addCaps = slices.Clone(s.AddCapabilities)
	}

	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        a.Name,
			Namespace:   a.Namespace,
			Labels:      podLabels,
			Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         ptr(int64(t.ActiveDeadline.Seconds())),
			TerminationGracePeriodSeconds: ptr(int64(t.TerminationGracePeriod.Seconds())),
			ServiceAccountName:            t.ServiceAccountName,
			AutomountServiceAccountToken:  ptr(*t.AutomountServiceAccountToken),
			// Service links put an env var per Service of the namespace into
			// the agent: noise for builds, and slow for big namespaces.
			EnableServiceLinks: ptr(false),
			NodeSelector:       nodeSelector,
			Tolerations:        tolerations,
			ImagePullSecrets:   pullSecrets,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser:      ptr(*s.RunAsUser),
				RunAsGroup:     ptr(*s.RunAsGroup),
				FSGroup:        ptr(*s.FSGroup),
				RunAsNonRoot:   ptr(*s.RunAsNonRoot),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Volumes: volumes,
			Containers: []corev1.Container{{
				Name:            ContainerName,
				Image:           t.Image,
				ImagePullPolicy: t.ImagePullPolicy,
				Env:             env,
				Resources:       *t.Resources.DeepCopy(),
				VolumeMounts:    mounts,
				// The termination message comes from the file only, never
				// from the agent's log: failure messages end up on commit
				// statuses.
				TerminationMessagePolicy: corev1.TerminationMessageReadFile,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr(false),
					ReadOnlyRootFilesystem:   ptr(*s.ReadOnlyRootFilesystem),
					RunAsNonRoot:             ptr(*s.RunAsNonRoot),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: addCaps},
				},
			}},
		},
	}
	for _, sc := range t.Sidecars {
		pod.Spec.Containers = append(pod.Spec.Containers, sc.container(t))
	}
	return pod
}

func coreVolumes(in []Volume) []corev1.Volume {
	out := make([]corev1.Volume, 0, len(in))
	for _, v := range in {
		out = append(out, v.Core())
	}
	return out
}

// mountsOf returns the agent container's volume mounts: the defaults
// (workspace at /home/jenkins, tmp at /tmp) with the template's merged in
// by mount path.
func mountsOf(t Template) []corev1.VolumeMount { return defaultMounts(deepCopyAll(t.VolumeMounts)) }

// defaultMounts merges mounts over the default workspace and tmp mounts by
// mount path; every container of an agent pod sees the workspace there.
func defaultMounts(mounts []corev1.VolumeMount) []corev1.VolumeMount {
	return mergeKeyed([]corev1.VolumeMount{
		{Name: VolumeWorkspace, MountPath: defaultWorkspaceMount},
		{Name: VolumeTmp, MountPath: defaultTmpMount},
	}, mounts, func(m corev1.VolumeMount) string { return m.MountPath })
}

// annotations renders the ECI settings; unset settings are left to ECI's
// defaults.
func (e ECI) annotations() map[string]string {
	a := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			a[k] = v
		}
	}
	setBool := func(k string, v *bool) {
		if v != nil {
			a[k] = strconv.FormatBool(*v)
		}
	}
	set(annotationSpecs, strings.Join(e.Specs, ","))
	set(annotationSpotStrategy, e.SpotStrategy)
	set(annotationSpotPrice, string(e.SpotPriceLimit))
	if e.SpotDuration != nil {
		a[annotationSpotDuration] = strconv.Itoa(*e.SpotDuration)
	}
	setBool(annotationSpotFallback, e.SpotFallback)
	setBool(annotationAutoIMC, e.AutoImageCache)
	set(annotationIMCID, e.ImageCacheID)
	set(annotationVSwitch, strings.Join(e.VSwitches, ","))
	set(annotationSchedule, e.ScheduleStrategy)
	set(annotationSecurityGroup, e.SecurityGroup)
	set(annotationRAMRole, e.RAMRoleName)
	set(annotationExtraStorage, e.ExtraEphemeralStorage)
	set(annotationFailStrategy, e.FailStrategy)
	set(annotationACRInstance, e.ACRInstanceID)
	setBool(annotationWithEIP, e.WithEIP)
	return a
}
