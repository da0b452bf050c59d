// The Function App on the Flex Consumption plan (Python 3.11), and every app setting it runs with.
// The settings are identity-based: the host and the app reach storage, Cosmos DB, Web PubSub,
// OpenAI and Application Insights as the user-assigned identity, with no key or connection
// string anywhere. tests/unit/test_infra.py reads the three settings blocks below and builds
// swarm_core.settings.Settings from them, so a setting the code cannot use fails CI.

param name string
param location string
param tags object = {}
param appServicePlanId string
param storageAccountName string
param deploymentStorageContainerName string
param applicationInsightsName string
param identityId string
param identityClientId string
param instanceMemoryMB int
param maximumInstanceCount int
param corsAllowedOrigins array = []
param swarmQueueName string
param swarmPoisonQueueName string
param maintenanceSchedule string
param swarmContainerName string
param cosmosEndpoint string
param cosmosDatabaseName string
param webPubSubEndpoint string
param webPubSubHubName string
@description('Versionless URI of the AUTH_SECRET secret in the Key Vault (keyvault.bicep).')
param authSecretUri string
@description('Empty when no Azure OpenAI account is deployed: the app then runs the offline LLM.')
param azureOpenAIEndpoint string = ''
param azureOpenAIDeployment string = ''
param azureOpenAIApiVersion string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION as app
// settings (functionAppConfig.runtime says it), so neither appears here.
var appSettings = {
  SWARM_ENV: 'production'
  // The host's storage connection (queue trigger, leases) and the app's blob/queue clients:
  // the same account, by URI, as the user-assigned identity.
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // Read by the trigger bindings (%SWARM_QUEUE%, %SWARM_POISON_QUEUE%, %MAINTENANCE_SCHEDULE%):
  // binding expressions only see app settings, never the code's defaults.
  SWARM_QUEUE: swarmQueueName
  SWARM_POISON_QUEUE: swarmPoisonQueueName
  MAINTENANCE_SCHEDULE: maintenanceSchedule
  SWARM_CONTAINER: swarmContainerName
  COSMOS_ENDPOINT: cosmosEndpoint
  COSMOS_DATABASE: cosmosDatabaseName
  WEBPUBSUB_ENDPOINT: webPubSubEndpoint
  WEBPUBSUB_HUB: webPubSubHubName
  // DefaultAzureCredential reads it: the app's SDK clients sign in as the user-assigned identity.
  AZURE_CLIENT_ID: identityClientId
  // A Key Vault reference: the platform reads the secret as the app's identity
  // (keyVaultAccessIdentityResourceId below; 'Key Vault Secrets User' in rbac.bicep) and the app
  // sees the value. The secret itself never appears in the site's configuration.
  AUTH_SECRET: '@Microsoft.KeyVault(SecretUri=${authSecretUri})'
  // The connection string only locates the App Insights resource (its instrumentation key is an
  // id, not a credential): with local auth disabled, ingestion needs the Entra token below.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // The Python worker's threads for sync functions (default: cores + 4). Steps and requests
  // mostly wait on storage; with the queue's batchSize + newBatchThreshold (12) steps at once
  // the default left no thread for the HTTP API (bench/load.py).
  PYTHON_THREADPOOL_THREAD_COUNT: '24'
}

var offlineLLMSettings = {
  LLM_PROVIDER: 'offline'
}

var azureOpenAISettings = {
  LLM_PROVIDER: 'azure_openai'
  AZURE_OPENAI_ENDPOINT: azureOpenAIEndpoint
  AZURE_OPENAI_DEPLOYMENT: azureOpenAIDeployment
  AZURE_OPENAI_API_VERSION: azureOpenAIApiVersion
}

module functionApp 'br/public:avm/res/web/site:0.15.1' = {
  name: 'functionApp'
  params: {
    kind: 'functionapp,linux'
    name: name
    location: location
    tags: union(tags, { 'azd-service-name': 'api' }) // azd deploys service `api` here
    serverFarmResourceId: appServicePlanId
    managedIdentities: {
      systemAssigned: false
      userAssignedResourceIds: [
        identityId
      ]
    }
    // Key Vault references resolve as this identity (the default, a system-assigned identity,
    // does not exist here).
    keyVaultAccessIdentityResourceId: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentStorageContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      alwaysOn: false // not available on Flex Consumption (the module's default is true)
      cors: {
        allowedOrigins: corsAllowedOrigins
      }
    }
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: name
}

// The settings are applied here rather than through the module's appSettingsKeyValuePairs, in one
// resource the tests read. They hold no secret: AUTH_SECRET is a Key Vault reference.
resource siteAppSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(appSettings, empty(azureOpenAIEndpoint) ? offlineLLMSettings : azureOpenAISettings)
  dependsOn: [
    functionApp
  ]
}

output name string = functionApp.outputs.name
output uri string = 'https://${functionApp.outputs.defaultHostname}'
output blobServiceUri string = storage.properties.primaryEndpoints.blob
output queueServiceUri string = storage.properties.primaryEndpoints.queue
