// Package kubeplugin reads the pod templates of Jenkins' kubernetes plugin,
// as kept in Configuration as Code (jenkins.clouds[].kubernetes.templates),
// and turns each into a ferry agent template, saying what could not be
// carried over and why.
//
// The plugin's own inheritance (inheritFrom, the cloud's
// defaultsProviderTemplate) and its yaml merge strategies are resolved here
// with the plugin's rules, so every template is written out whole: ferry's
// inheritance merges differently (a sidecar is replaced, not merged field by
// field), and a flat template shows exactly what its pods become.
package kubeplugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Cloud is one kubernetes cloud of a JCasC document.
type Cloud struct {
	Name                     string        `json:"name"`
	Namespace                string        `json:"namespace"`
	JenkinsURL               string        `json:"jenkinsUrl"`
	DefaultsProviderTemplate string        `json:"defaultsProviderTemplate"`
	Templates                []PodTemplate `json:"templates"`
}

// PodTemplate is the plugin's pod template as JCasC writes it.
type PodTemplate struct {
	Name                  string              `json:"name"`
	Namespace             string              `json:"namespace"`
	Label                 string              `json:"label"`
	InheritFrom           string              `json:"inheritFrom"`
	InstanceCap           number              `json:"instanceCap"`
	InstanceCapStr        number              `json:"instanceCapStr"`
	IdleMinutes           number              `json:"idleMinutes"`
	IdleMinutesStr        number              `json:"idleMinutesStr"`
	ActiveDeadlineSeconds number              `json:"activeDeadlineSeconds"`
	ActiveDeadlineStr     number              `json:"activeDeadlineSecondsStr"`
	SlaveConnectTimeout   number              `json:"slaveConnectTimeout"`
	SlaveConnectStr       number              `json:"slaveConnectTimeoutStr"`
	ServiceAccount        string              `json:"serviceAccount"`
	SchedulerName         string              `json:"schedulerName"`
	NodeSelector          string              `json:"nodeSelector"`
	NodeUsageMode         string              `json:"nodeUsageMode"`
	HostNetwork           *bool               `json:"hostNetwork"`
	RunAsUser             number              `json:"runAsUser"`
	RunAsGroup            number              `json:"runAsGroup"`
	SupplementalGroups    string              `json:"supplementalGroups"`
	PodRetention          json.RawMessage     `json:"podRetention"`
	Containers            []ContainerTemplate `json:"containers"`
	EnvVars               []EnvVar            `json:"envVars"`
	Volumes               []PodVolume         `json:"volumes"`
	WorkspaceVolume       *WorkspaceVolume    `json:"workspaceVolume"`
	Annotations           []KeyValue          `json:"annotations"`
	ImagePullSecrets      []struct {
		Name string `json:"name"`
	} `json:"imagePullSecrets"`
	YAML              string          `json:"yaml"`
	YAMLs             []string        `json:"yamls"`
	YAMLMergeStrategy json.RawMessage `json:"yamlMergeStrategy"`
	// InheritYAMLMergeStrategy makes children without a strategy take
	// this template's (the plugin's default is false: they override).
	InheritYAMLMergeStrategy bool            `json:"inheritYamlMergeStrategy"`
	ShowRawYAML              *bool           `json:"showRawYaml"`
	AgentContainer           string          `json:"agentContainer"`
	AgentInjection           *bool           `json:"agentInjection"`
	NodeProperties           json.RawMessage `json:"nodeProperties"`

	// yamlsResolved are the raw pod YAMLs of the template and its parents,
	// parents first (set by unwrap).
	yamlsResolved []string
}

// ContainerTemplate is a container of a pod template.
type ContainerTemplate struct {
	Name                            string        `json:"name"`
	Image                           string        `json:"image"`
	AlwaysPullImage                 bool          `json:"alwaysPullImage"`
	Command                         string        `json:"command"`
	Args                            string        `json:"args"`
	TTYEnabled                      bool          `json:"ttyEnabled"`
	WorkingDir                      string        `json:"workingDir"`
	Privileged                      bool          `json:"privileged"`
	RunAsUser                       number        `json:"runAsUser"`
	RunAsGroup                      number        `json:"runAsGroup"`
	ResourceRequestCPU              string        `json:"resourceRequestCpu"`
	ResourceRequestMemory           string        `json:"resourceRequestMemory"`
	ResourceRequestEphemeralStorage string        `json:"resourceRequestEphemeralStorage"`
	ResourceLimitCPU                string        `json:"resourceLimitCpu"`
	ResourceLimitMemory             string        `json:"resourceLimitMemory"`
	ResourceLimitEphemeralStorage   string        `json:"resourceLimitEphemeralStorage"`
	Shell                           string        `json:"shell"`
	EnvVars                         []EnvVar      `json:"envVars"`
	Ports                           []PortMapping `json:"ports"`
	LivenessProbe                   *Probe        `json:"livenessProbe"`
}

// EnvVar is one of the plugin's environment variable kinds.
type EnvVar struct {
	EnvVar *struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"envVar"`
	SecretEnvVar *struct {
		Key        string `json:"key"`
		SecretName string `json:"secretName"`
		SecretKey  string `json:"secretKey"`
		Optional   bool   `json:"optional"`
	} `json:"secretEnvVar"`
}

// KeyValue is a pod annotation.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// PortMapping is a container port.
type PortMapping struct {
	Name          string `json:"name"`
	ContainerPort int32  `json:"containerPort"`
	HostPort      int32  `json:"hostPort"`
}

// Probe is the plugin's exec liveness probe.
type Probe struct {
	ExecArgs            string `json:"execArgs"`
	TimeoutSeconds      int32  `json:"timeoutSeconds"`
	InitialDelaySeconds int32  `json:"initialDelaySeconds"`
	FailureThreshold    int32  `json:"failureThreshold"`
	PeriodSeconds       int32  `json:"periodSeconds"`
	SuccessThreshold    int32  `json:"successThreshold"`
}

// PodVolume is one of the plugin's volume kinds; each is mounted at
// MountPath in every container of the pod.
type PodVolume struct {
	EmptyDirVolume *struct {
		MountPath string `json:"mountPath"`
		Memory    bool   `json:"memory"`
	} `json:"emptyDirVolume"`
	SecretVolume *struct {
		MountPath   string `json:"mountPath"`
		SecretName  string `json:"secretName"`
		DefaultMode string `json:"defaultMode"`
		Optional    bool   `json:"optional"`
	} `json:"secretVolume"`
	ConfigMapVolume *struct {
		MountPath     string `json:"mountPath"`
		ConfigMapName string `json:"configMapName"`
		SubPath       string `json:"subPath"`
		Optional      bool   `json:"optional"`
	} `json:"configMapVolume"`
	PersistentVolumeClaim *struct {
		MountPath string `json:"mountPath"`
		ClaimName string `json:"claimName"`
		ReadOnly  bool   `json:"readOnly"`
	} `json:"persistentVolumeClaim"`
	NFSVolume *struct {
		MountPath     string `json:"mountPath"`
		ServerAddress string `json:"serverAddress"`
		ServerPath    string `json:"serverPath"`
		ReadOnly      bool   `json:"readOnly"`
	} `json:"nfsVolume"`
	HostPathVolume *struct {
		MountPath string `json:"mountPath"`
		HostPath  string `json:"hostPath"`
	} `json:"hostPathVolume"`
	GenericEphemeralVolume *struct {
		MountPath        string `json:"mountPath"`
		AccessModes      string `json:"accessModes"`
		RequestsSize     string `json:"requestsSize"`
		StorageClassName string `json:"storageClassName"`
	} `json:"genericEphemeralVolume"`
}

// WorkspaceVolume is one of the plugin's workspace volume kinds.
type WorkspaceVolume struct {
	EmptyDirWorkspaceVolume *struct {
		Memory bool `json:"memory"`
	} `json:"emptyDirWorkspaceVolume"`
	PersistentVolumeClaimWorkspaceVolume *struct {
		ClaimName string `json:"claimName"`
		ReadOnly  bool   `json:"readOnly"`
	} `json:"persistentVolumeClaimWorkspaceVolume"`
	NFSWorkspaceVolume *struct {
		ServerAddress string `json:"serverAddress"`
		ServerPath    string `json:"serverPath"`
		ReadOnly      bool   `json:"readOnly"`
	} `json:"nfsWorkspaceVolume"`
	HostPathWorkspaceVolume *struct {
		HostPath string `json:"hostPath"`
	} `json:"hostPathWorkspaceVolume"`
	DynamicPVC *struct {
		AccessModes      string `json:"accessModes"`
		RequestsSize     string `json:"requestsSize"`
		StorageClassName string `json:"storageClassName"`
	} `json:"dynamicPVC"`
	GenericEphemeralVolume *struct {
		AccessModes      string `json:"accessModes"`
		RequestsSize     string `json:"requestsSize"`
		StorageClassName string `json:"storageClassName"`
	} `json:"genericEphemeralVolume"`
}

// number is an integer JCasC may write as a number or a string ("10").
type number struct {
	set bool
	v   int64
}

func (n *number) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not a whole number", string(b))
	}
	n.set, n.v = true, v
	return nil
}

func firstNumber(ns ...number) number {
	for _, n := range ns {
		if n.set {
			return n
		}
	}
	return number{}
}

// strategy returns the yaml merge strategy: "override", "merge" or "" when
// the template does not say. JCasC writes it as a symbol ("merge"), a
// call ("merge()") or an object ({merge: {}}).
func (t PodTemplate) strategy() (string, error) {
	raw := bytes.TrimSpace(t.YAMLMergeStrategy)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil || len(m) != 1 {
			return "", fmt.Errorf("yamlMergeStrategy %s: write override or merge", raw)
		}
		for k := range m {
			s = k
		}
	}
	switch strings.TrimSuffix(strings.TrimSpace(s), "()") {
	case "override", "overrides":
		return "override", nil
	case "merge":
		return "merge", nil
	}
	return "", fmt.Errorf("yamlMergeStrategy %q: the plugin knows override and merge", s)
}

// Parse reads the clouds of a JCasC document, or of the JCasC documents in
// a ConfigMap's data (the Jenkins Helm chart keeps them so).
func Parse(data []byte) ([]Cloud, error) {
	var probe struct {
		Kind    string            `json:"kind"`
		Data    map[string]string `json:"data"`
		Jenkins json.RawMessage   `json:"jenkins"`
	}
	if err := yaml.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	if probe.Kind == "ConfigMap" {
		var clouds []Cloud
		for _, key := range sortedKeys(probe.Data) {
			cs, err := parseCasC([]byte(probe.Data[key]))
			if err != nil {
				return nil, fmt.Errorf("ConfigMap data %s: %w", key, err)
			}
			clouds = append(clouds, cs...)
		}
		if len(clouds) == 0 {
			return nil, errors.New("the ConfigMap holds no JCasC document with jenkins.clouds[].kubernetes")
		}
		return clouds, nil
	}
	if probe.Kind != "" {
		return nil, fmt.Errorf("a %s is not a JCasC file; give the JCasC YAML or the ConfigMap holding it", probe.Kind)
	}
	clouds, err := parseCasC(data)
	if err != nil {
		return nil, err
	}
	if len(clouds) == 0 {
		return nil, errors.New("no jenkins.clouds[].kubernetes in the file: is it a JCasC document?")
	}
	return clouds, nil
}

func parseCasC(data []byte) ([]Cloud, error) {
	var doc struct {
		Jenkins struct {
			Clouds []struct {
				Kubernetes *Cloud `json:"kubernetes"`
			} `json:"clouds"`
		} `json:"jenkins"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("read JCasC: %w", err)
	}
	var out []Cloud
	for _, c := range doc.Jenkins.Clouds {
		if c.Kubernetes != nil {
			if c.Kubernetes.Name == "" {
				c.Kubernetes.Name = "kubernetes" // the plugin's default
			}
			out = append(out, *c.Kubernetes)
		}
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
