package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxIntrospectionBytes bounds an introspection answer.
const maxIntrospectionBytes = 1 << 20

// introspect asks the issuer's RFC 7662 endpoint about an opaque token. The
// gateway authenticates with HTTP Basic (client id and the secret from
// secretEnv, form-encoded as RFC 6749 §2.3.1 requires). An inactive token is
// ErrInvalidToken; an unreachable or failing endpoint ErrUnavailable.
func (is *issuer) introspect(ctx context.Context, token string, now time.Time) (claimSet, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, is.cfg.IntrospectionURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, newError(ErrUnavailable, "introspection request could not be built", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(is.cfg.ClientID), url.QueryEscape(is.secret))
	resp, err := is.opts.HTTPClient.Do(req)
	if err != nil {
		// The error text holds the URL only, never the form.
		is.opts.Logger.Warn("token introspection failed", "issuer", is.cfg.URL, "error", err)
		return nil, newError(ErrUnavailable, "the token could not be introspected", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	if err != nil || len(body) > maxIntrospectionBytes {
		return nil, newError(ErrUnavailable, "the introspection answer could not be read", err)
	}
	if resp.StatusCode != http.StatusOK {
		is.opts.Logger.Warn("token introspection refused", "issuer", is.cfg.URL, "status", resp.StatusCode)
		return nil, newError(ErrUnavailable, "the introspection endpoint answered "+resp.Status, nil)
	}
	var claims claimSet
	if err := json.Unmarshal(body, &claims); err != nil {
		return nil, newError(ErrUnavailable, "the introspection answer is not a JSON object", err)
	}
	var active bool
	if raw, ok := claims["active"]; !ok || json.Unmarshal(raw, &active) != nil || !active {
		return nil, invalid("the token is not active", nil)
	}
	if err := is.checkIntrospected(claims, now); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkIntrospected applies to an active introspection answer the checks a
// JWT gets: issuer and audience when the answer states them, exp and nbf,
// and that it is an access token.
func (is *issuer) checkIntrospected(c claimSet, now time.Time) error {
	if iss := c.str("iss"); iss != "" && iss != is.cfg.URL {
		return invalid("wrong issuer", nil)
	}
	if _, has := c["aud"]; has && !slices.Contains(c.audiences(), is.cfg.Audience) {
		return invalid("the token is not meant for this server (aud)", nil)
	}
	if use := c.str("token_use"); use != "" && use != "access_token" {
		return invalid("not an access token", nil)
	}
	exp, hasExp := c.time("exp")
	if _, present := c["exp"]; present && !hasExp {
		return invalid("malformed exp", errors.New("exp is not a number"))
	}
	if err := is.checkTimes(c, exp, now); err != nil {
		return err
	}
	return nil
}

// String describes the issuer for messages; it never includes the secret.
func (is *issuer) String() string { return fmt.Sprintf("issuer %s", is.cfg.URL) }
