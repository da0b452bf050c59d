// Cosmos DB for NoSQL, serverless (pay per request: a swarm backend idles most of the time), with
// the database and the three containers of DESIGN.md §5. Keys are disabled: the app reaches it
// with its managed identity and the Cosmos DB Built-in Data Contributor role (rbac.bicep).
// The containers are created here because data-plane RBAC cannot create them: the app's
// `ensure_containers` is for the local emulator only.

param name string
param location string
param tags object = {}
param databaseName string

// Partition keys as the adapters expect them (swarm_core/adapters/cosmos.py PARTITION_KEYS):
// one user per `users` partition, a user's swarm summaries together, and everything of one
// swarm (runtime document and nodes) in one `nodes` partition. `users` also holds the login
// attempts (CosmosAttemptStore), which carry a `ttl`: a default TTL of -1 turns expiry on for
// the items that have one and keeps the others for ever.
var containers = [
  { name: 'users', partitionKeyPath: '/username' }
  { name: 'swarms', partitionKeyPath: '/user_id' }
  { name: 'nodes', partitionKeyPath: '/swarm_id' }
]
var expiringContainers = ['users']
// Only what the app's queries filter or sort on is indexed (cosmos.py INDEXED_PATHS): every
// indexed value costs request units on every write, and a node document (its conversation
// window, its recent op ids) is written at every step. `users` is only read by id.
var indexedPaths = {
  users: []
  swarms: ['/user_id/?', '/status/?', '/created_order/?']
  nodes: ['/swarm_id/?', '/kind/?']
}

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    capabilities: [
      { name: 'EnableServerless' }
    ]
    consistencyPolicy: {
      // Strong, not Session: workers in different processes read nodes that other workers wrote.
      // The commit point (an If-Match write on the swarm document) catches a stale swarm read,
      // but not a stale node read, whose update would then be skipped. One region, so no cost
      // beyond reads at twice the RU.
      defaultConsistencyLevel: 'Strong'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    disableLocalAuth: true // no account keys: Entra ID tokens only
    disableKeyBasedMetadataWriteAccess: true
    publicNetworkAccess: 'Enabled'
    minimalTlsVersion: 'Tls12'
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource sqlContainers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [
  for container in containers: {
    parent: database
    name: container.name
    properties: {
      resource: union(
        {
          id: container.name
          partitionKey: {
            paths: [
              container.partitionKeyPath
            ]
            kind: 'Hash'
            version: 2
          }
          indexingPolicy: {
            indexingMode: 'consistent'
            automatic: true
            includedPaths: [for path in indexedPaths[container.name]: { path: path }]
            excludedPaths: [
              { path: '/*' }
            ]
          }
        },
        contains(expiringContainers, container.name) ? { defaultTtl: -1 } : {}
      )
    }
  }
]

output accountName string = account.name
output endpoint string = account.properties.documentEndpoint
