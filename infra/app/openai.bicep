// Optional Azure OpenAI account with one model deployment (main.bicep deploys it when
// `deployOpenAI` is true). Keys are disabled; the app calls it with its managed identity and the
// Cognitive Services OpenAI User role (rbac.bicep).

param name string
param location string
param tags object = {}
param deploymentName string
param modelName string
param modelVersion string
param deploymentSku string
@description('Thousands of tokens per minute.')
param capacity int

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    // Entra ID tokens are only accepted on a custom subdomain endpoint, not the regional one.
    customSubDomainName: name
    disableLocalAuth: true // no API keys
    publicNetworkAccess: 'Enabled'
  }
}

resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: deploymentSku
    capacity: capacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
  }
}

output accountName string = account.name
output endpoint string = account.properties.endpoint
output deploymentName string = deployment.name
