// Package apiauth is the bearer-token check of ferry's HTTP API
// (promotions, deliveries): one token per API, compared in constant time.
package apiauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// Bearer returns a gin handler that lets a request through only with
// "Authorization: Bearer <token>". An empty token refuses every request.
// Hashes of equal length are compared, so not even the length leaks.
func Bearer(token string) gin.HandlerFunc {
	want := sha256.Sum256([]byte(token))
	has := token != ""
	return func(c *gin.Context) {
		tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || !has || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			c.Header("WWW-Authenticate", `Bearer realm="ferry"`)
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "missing or wrong bearer token"})
			return
		}
		c.Next()
	}
}
