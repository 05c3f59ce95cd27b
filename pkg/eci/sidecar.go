package eci

import (
	"fmt"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxContainers is how many containers one ECI instance runs, the agent's
// included.
const MaxContainers = 20

// Sidecar is a container beside the agent in its pod: a database for
// integration tests, an image-build daemon, a cache. It starts with the
// agent, shares the pod's network (the build reaches it on localhost) and
// its workspace and tmp volumes — mounted where the agent has them unless
// the sidecar mounts something else at that path — and goes with the pod
// when the build ends.
//
// ECI sizes the instance from the sum of the containers' resources (each
// container's limit where set, else its request) rounded up to a spec it
// sells, and bills for that spec: Template.Warnings says when the sum
// leaves the spec list.
type Sidecar struct {
	// Name is a DNS label, unique in the pod; "jnlp" is the agent's.
	Name string `json:"name"`
	// Image is required.
	Image string `json:"image"`
	// ImagePullPolicy defaults to IfNotPresent.
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Command and Args replace the image's entrypoint and command.
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	// WorkingDir is the container's working directory.
	WorkingDir string `json:"workingDir,omitempty"`
	// TTY and Stdin keep a container whose command reads its input (the
	// kubernetes plugin's "cat" idiom) running until the pod goes.
	TTY   bool `json:"tty,omitempty"`
	Stdin bool `json:"stdin,omitempty"`
	// Env is the container's environment. The agent's variables (and its
	// JNLP secret) are never given to a sidecar.
	Env []corev1.EnvVar `json:"env,omitempty"`
	// Ports document what the sidecar listens on (localhost in the pod).
	Ports []corev1.ContainerPort `json:"ports,omitempty"`
	// Resources count towards the instance ECI creates; a sidecar without
	// them shares the agent's.
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`
	// VolumeMounts are added to the default workspace and tmp mounts; one
	// with a default's mount path replaces it.
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`
	// ReadinessProbe is the container's, as in a pod spec.
	ReadinessProbe *Probe `json:"readinessProbe,omitempty"`
	// Security overrides the pod's secure defaults for this container
	// only (a database image that starts as root, say); unset fields take
	// the template's.
	Security ContainerSecurity `json:"security,omitzero"`
}

// Probe is a container probe written as in a pod spec. It stands in for
// corev1.Probe for the same reason Volume stands in for corev1.Volume:
// its handler is an embedded struct that ferry's YAML loader would not
// flatten.
type Probe struct {
	Exec                *corev1.ExecAction      `json:"exec,omitempty"`
	HTTPGet             *corev1.HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket           *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	InitialDelaySeconds int32                   `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int32                   `json:"periodSeconds,omitempty"`
	TimeoutSeconds      int32                   `json:"timeoutSeconds,omitempty"`
	FailureThreshold    int32                   `json:"failureThreshold,omitempty"`
}

// Core returns the Kubernetes form of the probe; nil stays nil.
func (p *Probe) Core() *corev1.Probe {
	if p == nil {
		return nil
	}
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{
			Exec:      p.Exec.DeepCopy(),
			HTTPGet:   p.HTTPGet.DeepCopy(),
			TCPSocket: p.TCPSocket.DeepCopy(),
		},
		InitialDelaySeconds: p.InitialDelaySeconds,
		PeriodSeconds:       p.PeriodSeconds,
		TimeoutSeconds:      p.TimeoutSeconds,
		FailureThreshold:    p.FailureThreshold,
	}
}

func (p *Probe) clone() *Probe {
	if p == nil {
		return nil
	}
	c := *p
	c.Exec, c.HTTPGet, c.TCPSocket = p.Exec.DeepCopy(), p.HTTPGet.DeepCopy(), p.TCPSocket.DeepCopy()
	return &c
}

// ContainerSecurity is a Security without the pod-wide fsGroup.
type ContainerSecurity struct {
	RunAsUser              *int64              `json:"runAsUser,omitempty"`
	RunAsGroup             *int64              `json:"runAsGroup,omitempty"`
	RunAsNonRoot           *bool               `json:"runAsNonRoot,omitempty"`
	ReadOnlyRootFilesystem *bool               `json:"readOnlyRootFilesystem,omitempty"`
	AddCapabilities        []corev1.Capability `json:"addCapabilities,omitempty"`
}

func (s Sidecar) clone() Sidecar {
	c := s
	c.Command = slices.Clone(s.Command)
	c.Args = slices.Clone(s.Args)
	c.Env = deepCopyAll(s.Env)
	c.Ports = slices.Clone(s.Ports)
	c.Resources = *s.Resources.DeepCopy()
	c.VolumeMounts = deepCopyAll(s.VolumeMounts)
	c.ReadinessProbe = s.ReadinessProbe.clone()
	c.Security = ContainerSecurity{
		RunAsUser:              clonePtr(s.Security.RunAsUser),
		RunAsGroup:             clonePtr(s.Security.RunAsGroup),
		RunAsNonRoot:           clonePtr(s.Security.RunAsNonRoot),
		ReadOnlyRootFilesystem: clonePtr(s.Security.ReadOnlyRootFilesystem),
		AddCapabilities:        slices.Clone(s.Security.AddCapabilities),
	}
	return c
}

func cloneSidecars(in []Sidecar) []Sidecar {
	if in == nil {
		return nil
	}
	out := make([]Sidecar, len(in))
	for i, s := range in {
		out[i] = s.clone()
	}
	return out
}

// container renders the sidecar for a pod of template t (defaults applied).
func (s Sidecar) container(t Template) corev1.Container {
	sec := t.Security
	user := firstPtr(s.Security.RunAsUser, sec.RunAsUser)
	nonRoot := firstPtr(s.Security.RunAsNonRoot, sec.RunAsNonRoot)
	group := firstPtr(s.Security.RunAsGroup, sec.RunAsGroup)
	if s.Security.RunAsUser != nil {
		if s.Security.RunAsNonRoot == nil {
			nonRoot = ptr(*s.Security.RunAsUser != 0)
		}
		if s.Security.RunAsGroup == nil {
			group = s.Security.RunAsUser
		}
	}
	pull := s.ImagePullPolicy
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	var addCaps []corev1.Capability
	if len(s.Security.AddCapabilities) > 0 {
		addCaps = slices.Clone(s.Security.AddCapabilities)
	}
	return corev1.Container{
		Name:            s.Name,
		Image:           s.Image,
		ImagePullPolicy: pull,
		Command:         slices.Clone(s.Command),
		Args:            slices.Clone(s.Args),
		WorkingDir:      s.WorkingDir,
		TTY:             s.TTY,
		Stdin:           s.Stdin,
		Env:             deepCopyAll(s.Env),
		Ports:           slices.Clone(s.Ports),
		Resources:       *s.Resources.DeepCopy(),
		VolumeMounts:    defaultMounts(deepCopyAll(s.VolumeMounts)),
		ReadinessProbe:  s.ReadinessProbe.Core(),
		// As for the agent: a termination message never comes from a log.
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(*user),
			RunAsGroup:               ptr(*group),
			RunAsNonRoot:             ptr(*nonRoot),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(*firstPtr(s.Security.ReadOnlyRootFilesystem, sec.ReadOnlyRootFilesystem)),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: addCaps},
		},
	}
}

func firstPtr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// sidecars checks the sidecars of a defaulted template.
func (v *validator) sidecars(t Template, volumes []string) {
	if n := len(t.Sidecars) + 1; n > MaxContainers {
		v.add("sidecars", "the pod would have %d containers; an ECI instance runs at most %d, the agent's included", n, MaxContainers)
	}
	for i, s := range t.Sidecars {
		f := fmt.Sprintf("sidecars[%d]", i)
		switch {
		case s.Name == "":
			v.add(f+".name", "must be set, e.g. postgres")
		case len(validation.IsDNS1123Label(s.Name)) > 0:
			v.add(f+".name", "%q must be lower-case letters, digits or '-', at most 63 characters", s.Name)
		case s.Name == ContainerName:
			v.add(f+".name", "%q is the agent container's name; choose another", s.Name)
		case slices.IndexFunc(t.Sidecars, func(o Sidecar) bool { return o.Name == s.Name }) < i:
			v.add(f+".name", "%q is used by an earlier sidecar", s.Name)
		}
		if s.Image == "" {
			v.add(f+".image", "must be set: a sidecar has no default image")
		} else {
			v.imageRef(f+".image", s.Image)
		}
		if s.ImagePullPolicy != "" {
			v.pullPolicy(f+".imagePullPolicy", s.ImagePullPolicy)
		}
		v.resourcesAt(f+".resources", s.Resources)
		for j, e := range s.Env {
			if e.Name == "" || strings.ContainsAny(e.Name, "= \t\n") {
				v.add(fmt.Sprintf("%s.env[%d].name", f, j), "%q is not a variable name", e.Name)
			}
		}
		for j, m := range s.VolumeMounts {
			mf := fmt.Sprintf("%s.volumeMounts[%d]", f, j)
			if !slices.Contains(volumes, m.Name) {
				v.add(mf+".name", "%q is not a volume of the pod; add it to volumes", m.Name)
			}
			if !path.IsAbs(m.MountPath) {
				v.add(mf+".mountPath", "%q must be an absolute path", m.MountPath)
			}
		}
		if pr := s.ReadinessProbe; pr != nil {
			if n := btoi(pr.Exec != nil) + btoi(pr.HTTPGet != nil) + btoi(pr.TCPSocket != nil); n != 1 {
				v.add(f+".readinessProbe", "set exactly one of exec, httpGet or tcpSocket (found %d)", n)
			}
		}
		for j, p := range s.Ports {
			if p.ContainerPort < 1 || p.ContainerPort > 65535 {
				v.add(fmt.Sprintf("%s.ports[%d].containerPort", f, j), "%d is not a port (1-65535)", p.ContainerPort)
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
