// Package config reads and writes joblet's two configuration files: the
// server's joblet-config.yml and the client's rnx-config.yml.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"gopkg.in/yaml.v3"
)

// DefaultPort is joblet's gRPC port.
const DefaultPort = 50051

// Server is joblet-config.yml.
type Server struct {
	Version  string   `yaml:"version"`
	Server   Listen   `yaml:"server"`
	Security Security `yaml:"security"`
	Store    StoreRef `yaml:"store,omitempty"`
	Jobs     Jobs     `yaml:"jobs,omitempty"`
	Metrics  Metrics  `yaml:"metrics,omitempty"`
}

// Metrics is the optional plain-HTTP listener for /metrics (Prometheus) and
// /healthz; off when Address is empty.
type Metrics struct {
	Address string `yaml:"address,omitempty"`
}

// StoreMode is how a node's fleet state is kept: in which store, and
// whose store it is. It decides more than a description: a shared store
// gives server certificates short lifetimes (they renew automatically),
// and an embedded node is its own fleet's operator.
type StoreMode string

const (
	// ModeSecretsManager: AWS Secrets Manager, shared by the fleet.
	ModeSecretsManager StoreMode = "secretsmanager"
	// ModeDir: a directory store shared by the fleet (--store dir:PATH).
	ModeDir StoreMode = "dir"
	// ModeEmbedded: this node's private directory store (HOME/ca); it is
	// recorded as ModeDir in a StoreRef (see EmbeddedIn).
	ModeEmbedded StoreMode = "embedded"
)

// StoreRef says where the node's shared certificates live, so the running
// server can refresh its trust and renew its certificate.
type StoreRef struct {
	Kind   StoreMode `yaml:"kind,omitempty"` // ModeSecretsManager or ModeDir
	Prefix string    `yaml:"prefix,omitempty"`
	Region string    `yaml:"region,omitempty"`
	Dir    string    `yaml:"dir,omitempty"`
}

// EmbeddedIn reports whether the store is the embedded one of the node
// whose home is home: a directory store under home/ca, where the node is
// its own operator.
func (r StoreRef) EmbeddedIn(home string) bool {
	return r.Kind == ModeDir && filepath.Clean(r.Dir) == filepath.Join(home, "ca")
}

// Listen is where and as whom the node serves.
type Listen struct {
	Address string `yaml:"address"`
	Port    int    `yaml:"port"`
	NodeID  string `yaml:"nodeId"`
	// The names bootstrap put in the server certificate (besides the
	// defaults), recorded so that a re-run keeps them when it is not given
	// them again: this node's address, a load balancer's HOST[:PORT] and
	// the additional names.
	ServerAddress   string   `yaml:"serverAddress,omitempty"`
	PublicAddress   string   `yaml:"publicAddress,omitempty"`
	AdditionalNames []string `yaml:"additionalNames,omitempty"`
}

// Security holds the node's TLS material as PEM.
type Security struct {
	ServerCert string `yaml:"serverCert"`
	ServerKey  string `yaml:"serverKey"`
	CACert     string `yaml:"caCert"` // every trusted CA (PEM bundle)
	// CRL lists revoked certificates (PEM), refused in handshakes.
	CRL string `yaml:"crl,omitempty"`
	// TrustState is the root-signed trust state the node holds (a DSSE
	// envelope, internal/pki/trust.go): CACert is its roots. A trust state
	// in the store is taken only when one of these roots signed it.
	TrustState string `yaml:"trustState,omitempty"`
	// IdentityPolicy is the root-signed identity policy the node holds
	// (internal/idpolicy): which people may hold which role. Without one,
	// persons' certificates (`rnx login`) are refused.
	IdentityPolicy string `yaml:"identityPolicy,omitempty"`
	// RefreshInterval is how often a running server re-reads the trust
	// bundle from the store and renews its certificate when due.
	RefreshInterval string `yaml:"refreshInterval,omitempty"`
	// ServerLifetime is the lifetime of renewed server certificates.
	ServerLifetime string `yaml:"serverLifetime,omitempty"`
	// CAKMSKeyID is the AWS KMS key holding the CA's private key (KMS
	// mode): renewal signs through it. Empty: the key is in the store.
	CAKMSKeyID string `yaml:"caKmsKeyId,omitempty"`
	// Connection limits (connections.go); read when the server starts.
	MaxConnectionAge      string `yaml:"maxConnectionAge,omitempty"`
	MaxConnectionAgeGrace string `yaml:"maxConnectionAgeGrace,omitempty"`
	HandshakeTimeout      string `yaml:"handshakeTimeout,omitempty"`
	MaxPendingHandshakes  int    `yaml:"maxPendingHandshakes,omitempty"`
	MaxConnectionIdle     string `yaml:"maxConnectionIdle,omitempty"`
	KeepaliveTime         string `yaml:"keepaliveTime,omitempty"`
	MaxStreamsPerConn     int    `yaml:"maxStreamsPerConnection,omitempty"`
	MaxStreamsPerRole     int    `yaml:"maxStreamsPerRole,omitempty"`
	MaxConnections        int    `yaml:"maxConnections,omitempty"`
}

// DefaultRefreshInterval is how often a node polls the store when its
// config does not say. A safety net, not the way changes travel: a
// revocation or a rotation step is pushed to the fleet's nodes and carried
// by rnx (internal/push, internal/server/offer.go), so the poll only
// catches a node that was away. An hour keeps 10,000 nodes at rest under
// $50 a month of Secrets Manager calls (one ListSecrets per refresh:
// docs/OPERATIONS.md, "What a fleet at rest costs").
const DefaultRefreshInterval = time.Hour

// Durations parses RefreshInterval and ServerLifetime.
func (s *Server) Durations() (refresh, lifetime time.Duration, err error) {
	refresh, lifetime = DefaultRefreshInterval, pki.DefaultServerLifetime
	if v := s.Security.RefreshInterval; v != "" {
		if refresh, err = time.ParseDuration(v); err != nil || refresh <= 0 {
			return 0, 0, fmt.Errorf("security.refreshInterval %q: use a positive duration such as 1h", v)
		}
	}
	if v := s.Security.ServerLifetime; v != "" {
		if lifetime, err = time.ParseDuration(v); err != nil || lifetime <= 0 {
			return 0, 0, fmt.Errorf("security.serverLifetime %q: use a positive duration such as 8760h", v)
		}
	}
	return refresh, lifetime, nil
}

// Jobs bounds what the job runner keeps.
type Jobs struct {
	// LogBufferBytes caps the output kept per job; older bytes are dropped.
	LogBufferBytes int `yaml:"logBufferBytes,omitempty"`
	// StopGracePeriod is how long a stopped job has between SIGTERM and SIGKILL.
	StopGracePeriod string `yaml:"stopGracePeriod,omitempty"`
	// Containment and caps: see jobs.go and docs/JOBS.md.
	Isolation       string `yaml:"isolation,omitempty"` // full (default) | none
	User            string `yaml:"user,omitempty"`
	Network         string `yaml:"network,omitempty"` // none (default) | host
	Dir             string `yaml:"dir,omitempty"`     // the jobs' work dirs
	MemoryDefault   string `yaml:"memoryDefault,omitempty"`
	MemoryMax       string `yaml:"memoryMax,omitempty"`
	MemoryTotal     string `yaml:"memoryTotal,omitempty"` // all jobs together; default 75% of the node's RAM
	DiskDefault     string `yaml:"diskDefault,omitempty"` // a job's files (work dir, /tmp): a tmpfs of this size
	DiskMax         string `yaml:"diskMax,omitempty"`
	CPUDefault      int    `yaml:"cpuDefault,omitempty"`
	CPUMax          int    `yaml:"cpuMax,omitempty"`
	ProcsDefault    int    `yaml:"procsDefault,omitempty"`
	ProcsMax        int    `yaml:"procsMax,omitempty"`
	MaxRunning      int    `yaml:"maxRunning,omitempty"`
	MaxKept         int    `yaml:"maxKept,omitempty"`
	MaxRequestBytes int    `yaml:"maxRequestBytes,omitempty"`
	ListPageMax     int    `yaml:"listPageMax,omitempty"` // jobs per ListJobs reply
}

// Defaults for Jobs when the config leaves them out.
const (
	DefaultLogBufferBytes  = 1 << 20
	DefaultStopGracePeriod = 5 * time.Second
)

// ListenAddr is host:port for net.Listen.
func (s *Server) ListenAddr() string {
	return joinHostPort(s.Server.Address, s.Server.Port)
}

// GracePeriod parses Jobs.StopGracePeriod.
func (s *Server) GracePeriod() (time.Duration, error) {
	if s.Jobs.StopGracePeriod == "" {
		return DefaultStopGracePeriod, nil
	}
	d, err := time.ParseDuration(s.Jobs.StopGracePeriod)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("jobs.stopGracePeriod %q: use a duration such as 5s", s.Jobs.StopGracePeriod)
	}
	return d, nil
}

// LoadServer reads and validates a server config. A missing file wraps
// fs.ErrNotExist.
func LoadServer(path string) (*Server, error) {
	s, _, err := ReadServer(path)
	return s, err
}

// ReadServer is LoadServer that also returns the bytes it parsed, for a
// caller that must know whether the file changed (one read, so the two
// cannot disagree).
func ReadServer(path string) (*Server, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("server config %s not found: run `joblet certs bootstrap` first: %w", path, err)
		}
		return nil, nil, fmt.Errorf("read server config: %w", err)
	}
	s, err := ParseServer(b)
	if err != nil {
		return nil, nil, fmt.Errorf("server config %s: %w", path, err)
	}
	return s, b, nil
}

// ParseServer parses and validates a server config.
func ParseServer(b []byte) (*Server, error) {
	var s Server
	if err := decodeStrict(b, &s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// ExposedKeyWarning returns a warning when path, which holds a private key,
// can be read or written by others than its owner; "" otherwise.
func ExposedKeyWarning(path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("%s holds a private key and is accessible to others (mode %04o): run `chmod 600 %s`", path, fi.Mode().Perm(), path)
}

// Validate checks the fields a server cannot start without.
func (s *Server) Validate() error {
	if s.Server.Port <= 0 || s.Server.Port > 65535 {
		return fmt.Errorf("server.port %d is not a TCP port", s.Server.Port)
	}
	for field, v := range map[string]string{"security.serverCert": s.Security.ServerCert, "security.serverKey": s.Security.ServerKey, "security.caCert": s.Security.CACert} {
		if v == "" {
			return fmt.Errorf("%s is empty: re-run `joblet certs bootstrap`", field)
		}
	}
	if _, err := s.GracePeriod(); err != nil {
		return err
	}
	if _, _, err := s.Durations(); err != nil {
		return err
	}
	if _, err := s.Connections(); err != nil {
		return err
	}
	if s.Jobs.LogBufferBytes < 0 {
		return fmt.Errorf("jobs.logBufferBytes must not be negative")
	}
	return s.Jobs.Validate()
}

// Marshal renders the config as YAML.
func (s *Server) Marshal() ([]byte, error) { return encode(s) }

func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// decodeStrict refuses unknown fields, so a typo in a hand-edited file is an
// error instead of a silently ignored setting.
func decodeStrict(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("the file is empty")
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid YAML: %w", err)
	}
	return nil
}

func joinHostPort(host string, port int) string {
	if len(host) > 0 && host[0] != '[' && bytes.ContainsRune([]byte(host), ':') {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}
