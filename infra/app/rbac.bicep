// Every data-plane role assignment of the deployment, in one place: what the app's user-assigned
// identity may do on each service (nothing else has keys to fall back on), and the same grants
// for the developer who ran azd, so they can run the app locally against these resources.
// Each assignment is named guid(scope, principal, role): deterministic, so redeploying is a no-op
// and two principals never collide.

param storageAccountName string
param appInsightsName string
param cosmosAccountName string
param webPubSubName string
param keyVaultName string
@description('Empty when no Azure OpenAI account is deployed.')
param openAIAccountName string = ''
param managedIdentityPrincipalId string
@description('Object id of the developer to grant the same roles; empty for none.')
param userPrincipalId string = ''
@allowed([
  'User'
  'ServicePrincipal'
])
param userPrincipalType string = 'User'

var grantUser = !empty(userPrincipalId)
var withOpenAI = !empty(openAIAccountName)

// Built-in role definition ids (the same in every tenant).
// Storage Blob Data Owner: the host manages its lease and deployment containers (Owner, not
// Contributor, as the Functions identity-based connection docs require for AzureWebJobsStorage).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Storage Queue Data Contributor: the queue trigger reads, deletes and re-queues messages and
// moves poison messages to `<queue>-poison`; the app enqueues. It contains everything the
// narrower Queue Data Reader / Message Processor / Message Sender roles grant, so those are not
// assigned as well. No Table role: nothing here uses tables (no Durable Functions), and the host
// is not given a table service URI.
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// Monitoring Metrics Publisher: send telemetry to App Insights with local auth disabled.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
// Web PubSub Service Owner: send to groups and mint client access tokens with Entra ID.
var webPubSubServiceOwner = '12cf5a90-567b-43ae-8102-96cf46c7d9b4'
// Cognitive Services OpenAI User: call the model deployments (chat completions).
var cognitiveServicesOpenAIUser = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'
// Key Vault Secrets User: read secret values (AUTH_SECRET, through the app's Key Vault reference).
// The app's identity only: a developer's local run makes its own AUTH_SECRET.
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
// Cosmos DB Built-in Data Contributor: a Cosmos data-plane role (sqlRoleDefinitions), not an
// Azure RBAC role; it reads and writes items but cannot create databases or containers.
var cosmosDataContributor = '00000000-0000-0000-0000-000000000002'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' existing = {
  name: cosmosAccountName
}

resource webPubSub 'Microsoft.SignalRService/webPubSub@2023-02-01' existing = {
  name: webPubSubName
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource openAI 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = if (withOpenAI) {
  name: openAIAccountName
}

// ---------------------------------------------------------------------------------------------
// The app's managed identity
// ---------------------------------------------------------------------------------------------

// Storage Blob Data Owner → app identity
resource appBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, managedIdentityPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Queue Data Contributor → app identity
resource appQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, managedIdentityPrincipalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Monitoring Metrics Publisher → app identity
resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, managedIdentityPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Web PubSub Service Owner → app identity
resource appWebPubSubOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(webPubSub.id, managedIdentityPrincipalId, webPubSubServiceOwner)
  scope: webPubSub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', webPubSubServiceOwner)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault Secrets User → app identity
resource appKeyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, managedIdentityPrincipalId, keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Cognitive Services OpenAI User → app identity (only with an OpenAI account)
resource appOpenAIUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withOpenAI) {
  name: guid(openAI.id, managedIdentityPrincipalId, cognitiveServicesOpenAIUser)
  scope: openAI
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cognitiveServicesOpenAIUser)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Cosmos DB Built-in Data Contributor → app identity. roleDefinitionId must be the full id of
// the account's sqlRoleDefinition (a bare GUID is rejected).
resource appCosmosDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: cosmos
  name: guid(cosmos.id, managedIdentityPrincipalId, cosmosDataContributor)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributor}'
    principalId: managedIdentityPrincipalId
    scope: cosmos.id
  }
}

// ---------------------------------------------------------------------------------------------
// The developer who ran azd (optional): the same data access, to run the app locally against
// the cloud resources with their own `az login` / `azd auth login`.
// ---------------------------------------------------------------------------------------------

// Storage Blob Data Owner → developer
resource userBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage.id, userPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Storage Queue Data Contributor → developer
resource userQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage.id, userPrincipalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Monitoring Metrics Publisher → developer
resource userMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(appInsights.id, userPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Web PubSub Service Owner → developer
resource userWebPubSubOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(webPubSub.id, userPrincipalId, webPubSubServiceOwner)
  scope: webPubSub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', webPubSubServiceOwner)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Cognitive Services OpenAI User → developer (only with an OpenAI account)
resource userOpenAIUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser && withOpenAI) {
  name: guid(openAI.id, userPrincipalId, cognitiveServicesOpenAIUser)
  scope: openAI
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cognitiveServicesOpenAIUser)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Cosmos DB Built-in Data Contributor → developer
resource userCosmosDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = if (grantUser) {
  parent: cosmos
  name: guid(cosmos.id, userPrincipalId, cosmosDataContributor)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributor}'
    principalId: userPrincipalId
    scope: cosmos.id
  }
  // Cosmos DB takes one role-assignment write per account at a time; concurrent ones conflict.
  dependsOn: [
    appCosmosDataContributor
  ]
}
