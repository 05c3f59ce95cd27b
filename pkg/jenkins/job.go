package jenkins

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/bndr/gojenkins"
	"go.opentelemetry.io/otel/attribute"
)

// Job describes a job as configured.
type Job struct {
	Name     string
	FullName string
	URL      string
	// Buildable is false for disabled jobs (a trigger then gives ErrDisabled).
	Buildable bool
	InQueue   bool
	// Params are the job's parameter definitions, in order. Parameters a
	// trigger passes that are not defined here are dropped by Jenkins. A
	// Pipeline job gets those of its Jenkinsfile's parameters block only
	// once a build has run it.
	Params []ParamDef
}

// ParamDef is one parameter definition of a job.
type ParamDef struct {
	Name string
	// Type is Jenkins' class name, e.g. StringParameterDefinition.
	Type    string
	Default string
}

// HasParam reports whether the job defines a parameter called name.
func (j Job) HasParam(name string) bool {
	for _, p := range j.Params {
		if p.Name == name {
			return true
		}
	}
	return false
}

// Job looks up a job (a folder path "a/b" is fine) and its parameter
// definitions. The dispatcher uses it (through MissingParams) to check
// that the job defines ferry's parameters, the correlation parameter
// FindByParam relies on above all: Jenkins drops undefined parameters
// without an error.
//
// Through gojenkins: Job.Poll and its JobResponse type (parameter
// definitions under property[].parameterDefinitions) are right. The path is
// built here, escaped per segment, because gojenkins' GetJob does not
// escape; the bound transport supplies the context and the status gojenkins
// drops.
func (c *Client) Job(ctx context.Context, job string) (Job, error) {
	var out Job
	err := c.call(ctx, "job", []attribute.KeyValue{attrJob.String(job)}, func(ctx context.Context) error {
		p, err := jobPath(job)
		if err != nil {
			return err
		}
		gj, ex := c.gojenkins(ctx)
		j := &gojenkins.Job{Jenkins: gj, Raw: new(gojenkins.JobResponse), Base: p}
		_, err = j.Poll(ctx)
		if err := c.result(ex, http.MethodGet, p+"/api/json", err); err != nil {
			return err
		}
		raw := j.GetDetails()
		if raw.Name == "" && raw.URL == "" {
			return &HTTPError{Method: http.MethodGet, Path: p + "/api/json", Status: http.StatusOK,
				Body: "answer is not a job"}
		}
		out = Job{
			Name:      raw.Name,
			FullName:  raw.FullName,
			URL:       raw.URL,
			Buildable: raw.Buildable,
			InQueue:   raw.InQueue,
		}
		for _, prop := range raw.Property {
			for _, d := range prop.ParameterDefinitions {
				def := ParamDef{Name: d.Name, Type: d.Type}
				if v := d.DefaultParameterValue.Value; v != nil {
					def.Default = fmt.Sprint(v)
				}
				out.Params = append(out.Params, def)
			}
		}
		return nil
	})
	if err != nil {
		return Job{}, fmt.Errorf("read job %s: %w", job, err)
	}
	return out, nil
}

// Ping checks that Jenkins answers with these credentials and returns its
// version (the X-Jenkins header). An answer without that header is not
// from Jenkins: wrong URL.
//
// Through gojenkins: its Requester.GetJSON on "/" with ExecutorResponse is
// what gojenkins' own Init/Info use to learn the version; here it is
// narrowed with tree=mode and given the bound transport, because Info
// reads the whole root object and ignores the status.
func (c *Client) Ping(ctx context.Context) (string, error) {
	var version string
	err := c.call(ctx, "ping", nil, func(ctx context.Context) error {
		gj, ex := c.gojenkins(ctx)
		resp, err := gj.Requester.GetJSON(ctx, "/", gj.Raw, map[string]string{"tree": "mode"}) //nolint:bodyclose // gojenkins reads and closes the body
		if err := c.result(ex, http.MethodGet, "/api/json", err); err != nil {
			return err
		}
		version = strings.TrimSpace(resp.Header.Get("X-Jenkins"))
		if version == "" {
			return &HTTPError{Method: http.MethodGet, Path: "/api/json", Status: resp.StatusCode,
				Body: "no X-Jenkins header: not a Jenkins URL"}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("ping: %w", err)
	}
	return version, nil
}
