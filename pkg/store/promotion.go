package store

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Promotion states.
const (
	// PromotionRunning: the promoter works on it (copy, rollout, verify).
	PromotionRunning = "running"
	// PromotionWaiting: an environment that needs approval is next.
	PromotionWaiting = "waiting_approval"
	// PromotionSucceeded: every environment runs the digest and passed.
	PromotionSucceeded = "succeeded"
	// PromotionFailed: a step failed; Reason says which and why.
	PromotionFailed = "failed"
	// PromotionRejected: an approver refused the next environment.
	PromotionRejected = "rejected"
)

// Environment phases, in the order a promotion goes through them.
const (
	EnvPending         = "pending"
	EnvAwaitingApprove = "awaiting_approval"
	EnvApproved        = "approved"
	// EnvCanary: the environment goes through its canary steps
	// (PromotionEnv.CanaryStep is the next one) before EnvRolling.
	EnvCanary      = "canary"
	EnvRolling     = "rolling"
	EnvVerifying   = "verifying"
	EnvSucceeded   = "succeeded"
	EnvRollingBack = "rolling_back"
	EnvRolledBack  = "rolled_back"
	EnvRejected    = "rejected"
)

// Promotion kinds.
const (
	KindPromote  = "promote"
	KindRollback = "rollback"
)

// Promotion is one image's way through an app's environments, kept as the
// promoter's durable state machine: every step is recorded before and
// after it is taken, so a restarted promoter resumes where it stopped. It
// doubles as the audit trail.
type Promotion struct {
	ID string `json:"id"`
	// Revision is the store's optimistic-concurrency counter (see
	// Store.PutPromotion).
	Revision int64 `json:"revision"`
	// Kind is KindPromote or KindRollback.
	Kind string `json:"kind"`
	App  string `json:"app"`
	// Source is the image reference as requested (tag or digest).
	Source string `json:"source"`
	// SourceDigest is the digest Source was resolved to, once; every later
	// step uses it.
	SourceDigest string `json:"source_digest,omitempty"`
	// Target is the promoted image, repository@digest, once copied.
	Target string `json:"target,omitempty"`
	// Tags were put on the target repository for the digest.
	Tags        []string `json:"tags,omitempty"`
	Commit      string   `json:"commit,omitempty"`
	BuildURL    string   `json:"build_url,omitempty"`
	Version     string   `json:"version,omitempty"`
	TraceParent string   `json:"traceparent,omitempty"`
	RequestedBy string   `json:"requested_by,omitempty"`
	// RollbackOf names the promotion whose digest a rollback restores.
	RollbackOf   string         `json:"rollback_of,omitempty"`
	State        string         `json:"state"`
	Reason       string         `json:"reason,omitempty"`
	Environments []PromotionEnv `json:"environments"`
	Audit        []AuditEntry   `json:"audit"`
	CreatedAt    time.Time      `json:"created_at"`
	UpdatedAt    time.Time      `json:"updated_at"`
	FinishedAt   time.Time      `json:"finished_at,omitzero"`
}

// PromotionEnv is the progress of a promotion in one environment.
type PromotionEnv struct {
	Name  string `json:"name"`
	Phase string `json:"phase"`
	// NeedsApproval is copied from the configuration when the promotion
	// is created, so a later configuration change cannot skip a gate.
	NeedsApproval bool `json:"needs_approval,omitempty"`
	// Previous holds the images the environment ran before the rollout,
	// recorded before anything was changed.
	Previous   []DeploymentImage `json:"previous,omitempty"`
	Approver   string            `json:"approver,omitempty"`
	ApprovedAt time.Time         `json:"approved_at,omitzero"`
	StartedAt  time.Time         `json:"started_at,omitzero"`
	// VerifyingSince starts the soak time; kept so a restart does not
	// start it over.
	VerifyingSince time.Time `json:"verifying_since,omitzero"`
	// CanaryStep is the index of the canary step to take next and
	// StepSince when the step before it ended (a pause counts from then):
	// kept so a restart neither repeats a step nor starts a pause over.
	CanaryStep int       `json:"canary_step,omitempty"`
	StepSince  time.Time `json:"step_since,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Reason     string    `json:"reason,omitempty"`
	// DeploymentID is the environment's deployment on the Git host, once
	// created, and DeploymentState the last state reported to it; kept so
	// a restarted promoter neither creates a second deployment nor
	// repeats a status.
	DeploymentID    int64  `json:"deployment_id,omitempty"`
	DeploymentState string `json:"deployment_state,omitempty"`
}

// DeploymentImage is the image of one container of one Deployment.
type DeploymentImage struct {
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	Container  string `json:"container"`
	Image      string `json:"image"`
	// Revision is, for a Knative Service (Deployment is then the
	// Service's name), the Revision that served it.
	Revision string `json:"revision,omitempty"`
}

// AuditEntry is one thing that happened to a promotion.
type AuditEntry struct {
	At          time.Time `json:"at"`
	Actor       string    `json:"actor"`
	Action      string    `json:"action"`
	Environment string    `json:"environment,omitempty"`
	Detail      string    `json:"detail,omitempty"`
}

// Finished reports whether the promotion reached a final state.
func (p Promotion) Finished() bool {
	switch p.State {
	case PromotionSucceeded, PromotionFailed, PromotionRejected:
		return true
	}
	return false
}

// SortPromotions orders promotions oldest first, by CreatedAt then ID.
func SortPromotions(ps []Promotion) {
	slices.SortFunc(ps, func(a, b Promotion) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(strings.ToLower(a.ID), strings.ToLower(b.ID))
	})
}
