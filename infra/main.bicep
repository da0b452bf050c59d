// The swarm backend in one subscription-scope deployment, without a single key: a Function App on
// the Flex Consumption plan, its storage (blob history + operations queue), Cosmos DB (serverless),
// Web PubSub, monitoring and, optionally, an Azure OpenAI model. One user-assigned identity reaches
// everything; local auth is off everywhere it can be, and every data-plane grant is in
// app/rbac.bicep. Deploy with `azd up` (see ../README.md, "Deploy to Azure").
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; it seeds the resource token and names the resource group.')
param environmentName string

// No @allowed list: the regions offering Flex Consumption keep growing and a stale list blocks
// good ones (`az functionapp list-flexconsumption-locations` prints the current set).
@minLength(1)
@description('Region of every resource (it must offer the Flex Consumption plan).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the developer running azd (azd sets AZURE_PRINCIPAL_ID); empty for none.')
param principalId string = ''

@description('Kind of principal behind principalId: a person, or a CI service principal.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Grant principalId the same data-plane roles as the app, to run it locally against these resources.')
param allowUserIdentityPrincipal bool = true

@secure()
@minLength(32)
@description('Secret that signs the API\'s access tokens (AUTH_SECRET), stored in the Key Vault. azure.yaml generates one per azd environment.')
param authSecret string

@description('Memory of one Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on Flex Consumption instances (a cost ceiling).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

// A comma-separated string, not an array: azd fills parameters from environment variables.
@description('Browser origins allowed to call the API (the web frontend), comma-separated, e.g. https://app.example.com.')
param corsAllowedOrigins string = ''

@description('NCRONTAB schedule of the maintenance timer (re-drives stuck swarms, announces idle ones).')
param maintenanceSchedule string = '0 */5 * * * *'

@description('Web PubSub tier: Free_F1 (20 connections, for trying it out) or a paid tier.')
@allowed([
  'Free_F1'
  'Standard_S1'
  'Premium_P1'
])
param webPubSubSku string = 'Free_F1'

@description('Deploy an Azure OpenAI account and model; without it the app runs the offline scripted LLM.')
param deployOpenAI bool = false

@description('Region of the Azure OpenAI account (model availability differs by region); empty: `location`.')
param openAILocation string = ''

@description('Model to deploy, and the deployment name the app calls.')
param openAIModelName string = 'gpt-4o-mini'

@description('Model version (it must support structured outputs).')
param openAIModelVersion string = '2024-07-18'

@description('Deployment SKU of the model.')
param openAIDeploymentSku string = 'GlobalStandard'

@description('Capacity of the model deployment, in thousands of tokens per minute.')
@minValue(1)
param openAIModelCapacity int = 30

@description('Azure OpenAI API version the app uses (structured outputs need 2024-08-01-preview or later).')
param openAIApiVersion string = '2024-10-21'

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

// Names the code relies on (swarm_core/settings.py defaults and DESIGN.md §5).
var swarmQueueName = 'swarm-operations'
// The Functions host moves a message here after maxDequeueCount failures (`<queue>-poison`).
var swarmPoisonQueueName = '${swarmQueueName}-poison'
var swarmContainerName = 'swarms'
var cosmosDatabaseName = 'swarmdb'
var webPubSubHubName = 'swarm'

var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
// Flex Consumption pulls the app package from this container (max 63 characters: 12 + 32 + 1 + 7).
var deploymentStorageContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

// The app's one identity: storage, Cosmos DB, Web PubSub, OpenAI and App Insights all trust it
// (app/rbac.bicep), and the app pins DefaultAzureCredential to it with AZURE_CLIENT_ID.
module apiIdentity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'apiIdentity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module appServicePlan 'br/public:avm/res/web/serverfarm:0.1.1' = {
  name: 'appServicePlan'
  scope: rg
  params: {
    name: '${abbrs.webServerFarms}${resourceToken}'
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    reserved: true // Linux: Flex Consumption runs Linux only
    location: location
    tags: tags
  }
}

// One account for the Functions host (leases, the deployment package) and the app's own data:
// the `swarms` container (history, chats, logs, claim checks) and the operations queue.
module storage 'br/public:avm/res/storage/storage-account:0.8.3' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    kind: 'StorageV2'
    skuName: 'Standard_LRS'
    allowSharedKeyAccess: false // identity only: no account key can read or write anything
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    blobServices: {
      containers: [
        { name: deploymentStorageContainerName, publicAccess: 'None' }
        { name: swarmContainerName, publicAccess: 'None' }
      ]
    }
    // Declared rather than left to the host to create on first use, so the poison queue's
    // trigger has a queue to listen on before the first failure (DESIGN.md §4).
    queueServices: {
      queues: [
        { name: swarmQueueName }
        { name: swarmPoisonQueueName }
      ]
    }
  }
}

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.11.1' = {
  name: 'logAnalytics'
  scope: rg
  params: {
    name: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    location: location
    tags: tags
    dataRetention: 30
  }
}

module appInsights 'br/public:avm/res/insights/component:0.6.0' = {
  name: 'appInsights'
  scope: rg
  params: {
    name: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    disableLocalAuth: true // telemetry only with an Entra token (Monitoring Metrics Publisher)
  }
}

module cosmos 'app/db.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    name: '${abbrs.documentDBDatabaseAccounts}${resourceToken}'
    location: location
    tags: tags
    databaseName: cosmosDatabaseName
  }
}

module webPubSub 'app/webpubsub.bicep' = {
  name: 'webPubSub'
  scope: rg
  params: {
    name: '${abbrs.signalRServiceWebPubSub}${resourceToken}'
    location: location
    tags: tags
    sku: webPubSubSku
    hubName: webPubSubHubName
  }
}

module openAI 'app/openai.bicep' = if (deployOpenAI) {
  name: 'openAI'
  scope: rg
  params: {
    name: '${abbrs.cognitiveServicesAccounts}${resourceToken}'
    location: empty(openAILocation) ? location : openAILocation
    tags: tags
    deploymentName: openAIModelName
    modelName: openAIModelName
    modelVersion: openAIModelVersion
    deploymentSku: openAIDeploymentSku
    capacity: openAIModelCapacity
  }
}

// AUTH_SECRET's home: the app reads it as a Key Vault reference with its identity.
module keyVault 'app/keyvault.bicep' = {
  name: 'keyVault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    authSecret: authSecret
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: tags
    appServicePlanId: appServicePlan.outputs.resourceId
    storageAccountName: storage.outputs.name
    deploymentStorageContainerName: deploymentStorageContainerName
    applicationInsightsName: appInsights.outputs.name
    identityId: apiIdentity.outputs.resourceId
    identityClientId: apiIdentity.outputs.clientId
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    corsAllowedOrigins: empty(corsAllowedOrigins) ? [] : split(corsAllowedOrigins, ',')
    swarmQueueName: swarmQueueName
    swarmPoisonQueueName: swarmPoisonQueueName
    maintenanceSchedule: maintenanceSchedule
    swarmContainerName: swarmContainerName
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabaseName: cosmosDatabaseName
    webPubSubEndpoint: webPubSub.outputs.endpoint
    webPubSubHubName: webPubSubHubName
    authSecretUri: keyVault.outputs.authSecretUri
    azureOpenAIEndpoint: deployOpenAI ? openAI.outputs.endpoint : ''
    azureOpenAIDeployment: deployOpenAI ? openAI.outputs.deploymentName : ''
    azureOpenAIApiVersion: openAIApiVersion
  }
  // The identity can read AUTH_SECRET before the app first resolves its Key Vault reference.
  dependsOn: [
    rbac
  ]
}

// Every data-plane role assignment of the deployment, for the app's identity and the developer.
module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    appInsightsName: appInsights.outputs.name
    cosmosAccountName: cosmos.outputs.accountName
    webPubSubName: webPubSub.outputs.name
    keyVaultName: keyVault.outputs.name
    openAIAccountName: deployOpenAI ? openAI.outputs.accountName : ''
    managedIdentityPrincipalId: apiIdentity.outputs.principalId
    userPrincipalId: allowUserIdentityPrincipal ? principalId : ''
    userPrincipalType: principalType
  }
}

// Outputs land in the azd environment (`azd env get-values`); scripts/write_local_settings.py
// builds local.settings.json from them. Bicep identifiers may contain `__`, so the storage URIs
// carry the app setting names the host and swarm_core.settings read.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
// Not AZURE_CLIENT_ID: that name in the azd environment would pin the developer's own
// DefaultAzureCredential (in hooks and local runs) to a managed identity that only exists in Azure.
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = apiIdentity.outputs.clientId
output AzureWebJobsStorage__blobServiceUri string = api.outputs.blobServiceUri
output AzureWebJobsStorage__queueServiceUri string = api.outputs.queueServiceUri
output SWARM_QUEUE string = swarmQueueName
output SWARM_POISON_QUEUE string = swarmPoisonQueueName
output MAINTENANCE_SCHEDULE string = maintenanceSchedule
output SWARM_CONTAINER string = swarmContainerName
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output COSMOS_DATABASE string = cosmosDatabaseName
output WEBPUBSUB_ENDPOINT string = webPubSub.outputs.endpoint
output WEBPUBSUB_HUB string = webPubSubHubName
output LLM_PROVIDER string = deployOpenAI ? 'azure_openai' : 'offline'
output AZURE_OPENAI_ENDPOINT string = deployOpenAI ? openAI.outputs.endpoint : ''
output AZURE_OPENAI_DEPLOYMENT string = deployOpenAI ? openAI.outputs.deploymentName : ''
output AZURE_OPENAI_API_VERSION string = openAIApiVersion
