package catalog

import (
	"fmt"
	"strconv"
	"time"
)

// EnvVar is one environment variable the service reads.
type EnvVar struct {
	Name     string
	Required bool
	Default  string
	Doc      string
}

// EnvVars lists every variable LoadConfig reads. The Kubernetes manifest in
// deploy/kubernetes is tested against it. The AWS SDK reads its own variables
// besides (AWS_ENDPOINT_URL, credentials, a web identity token on EKS).
var EnvVars = []EnvVar{
	{Name: "CATALOG_ADDR", Default: ":8080", Doc: "listen address"},
	{Name: "CATALOG_DB", Required: true, Doc: "SQLite database file (the source of truth)"},
	{Name: "CACHE_TABLE", Required: true, Doc: "the shared DynamoDB table"},
	{Name: "CACHE_NAMESPACE", Default: "products", Doc: "key prefix in the table"},
	{Name: "CACHE_CREATE_TABLE", Default: "false", Doc: "create the table when missing (needs the admin policy)"},
	{Name: "CACHE_L1_TTL", Default: "1m", Doc: "L1 entry lifetime"},
	{Name: "AWS_REGION", Required: true, Doc: "the table's region"},
}

// Config is the service's configuration.
type Config struct {
	Addr        string
	DB          string
	Table       string
	Namespace   string
	CreateTable bool
	L1TTL       time.Duration
	Region      string
}

// LoadConfig reads EnvVars through getenv (os.Getenv in main).
func LoadConfig(getenv func(string) string) (Config, error) {
	v := map[string]string{}
	for _, e := range EnvVars {
		s := getenv(e.Name)
		if s == "" {
			if e.Required {
				return Config{}, fmt.Errorf("catalog: %s is required (%s)", e.Name, e.Doc)
			}
			s = e.Default
		}
		v[e.Name] = s
	}
	c := Config{Addr: v["CATALOG_ADDR"], DB: v["CATALOG_DB"], Table: v["CACHE_TABLE"], Namespace: v["CACHE_NAMESPACE"], Region: v["AWS_REGION"]}
	var err error
	if c.CreateTable, err = strconv.ParseBool(v["CACHE_CREATE_TABLE"]); err != nil {
		return Config{}, fmt.Errorf("catalog: CACHE_CREATE_TABLE: %w", err)
	}
	if c.L1TTL, err = time.ParseDuration(v["CACHE_L1_TTL"]); err != nil {
		return Config{}, fmt.Errorf("catalog: CACHE_L1_TTL: %w", err)
	}
	return c, nil
}
