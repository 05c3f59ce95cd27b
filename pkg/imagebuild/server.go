package imagebuild

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/ferryci/ferry/pkg/apiauth"
)

const maxRequestBytes = 64 << 10

// Server is the image build API: POST /api/v1/images starts a build (or
// finds the same one), GET /api/v1/images/ID reports on it. It takes the
// pipelines' bearer token, as the promotion API does.
type Server struct {
	b    *Builder
	auth gin.HandlerFunc
}

// NewServer serves b to holders of token.
func NewServer(b *Builder, token string) *Server {
	return &Server{b: b, auth: apiauth.Bearer(token)}
}

// Register mounts the endpoints on r.
func (s *Server) Register(r gin.IRouter) {
	g := r.Group("/api/v1/images", s.auth)
	g.POST("", s.start)
	g.GET("/:id", s.get)
}

func (s *Server) start(c *gin.Context) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxRequestBytes))
	var r Request
	if err == nil {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		err = dec.Decode(&r)
	}
	if err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "the body is not an image build request: " + err.Error()})
		return
	}
	st, err := s.b.Start(c.Request.Context(), r)
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		c.JSON(http.StatusBadRequest, gin.H{"error": ve.Error(), "problems": ve.Problems})
	case err != nil:
		s.b.log.Error("starting an image build", "error", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "could not start the build pod; try again: " + err.Error()})
	default:
		c.JSON(http.StatusAccepted, st)
	}
}

func (s *Server) get(c *gin.Context) {
	st, err := s.b.Get(c.Request.Context(), c.Param("id"))
	switch {
	case errors.Is(err, ErrNotFound):
		c.JSON(http.StatusNotFound, gin.H{"error": err.Error()})
	case err != nil:
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
	default:
		c.JSON(http.StatusOK, st)
	}
}
