package main

import (
	"context"
	"testing"
)

func TestParseJob(t *testing.T) {
	tests := []struct {
		spec      string
		wantPath  string
		wantLabel string
		wantPipe  bool
		wantParam []string
		wantErr   bool
	}{
		{spec: "app", wantPath: "app"},
		{spec: " team/app=ferry-agent:SHA,REF ", wantPath: "team/app", wantLabel: "ferry-agent", wantParam: []string{"SHA", "REF"}},
		{spec: "app=pipeline+ferry:SHA", wantPath: "app", wantLabel: "ferry", wantPipe: true, wantParam: []string{"SHA"}},
		{spec: "=ferry", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			path, js, err := parseJob(tt.spec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if path != tt.wantPath || js.Label != tt.wantLabel || js.Pipeline != tt.wantPipe || len(js.Params) != len(tt.wantParam) {
				t.Fatalf("parseJob = %q %+v", path, js)
			}
			for i, p := range tt.wantParam {
				if js.Params[i].Name != p || js.Params[i].Type != "" {
					t.Errorf("param %d = %+v, want %s", i, js.Params[i], p)
				}
			}
		})
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := run(ctx, []string{"-listen", "127.0.0.1:0", "-jobs", "app=ferry:SHA;team/lib", "-locale", "zh_CN", "-ignore-accept-language"}); err != nil {
		t.Errorf("run = %v", err)
	}
	if err := run(ctx, []string{"-listen", "127.0.0.1:0", "-jobs", "=x"}); err == nil {
		t.Errorf("run with a bad job spec succeeded")
	}
	if err := run(ctx, []string{"-nosuchflag"}); err == nil {
		t.Errorf("run with an unknown flag succeeded")
	}
}
