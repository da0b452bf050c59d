// Key Vault for the app's one secret, AUTH_SECRET (it signs the API's access tokens). The vault
// authorizes with Azure RBAC only (no access policies): the app's identity reads secrets through
// 'Key Vault Secrets User' (rbac.bicep) and the Function App gets the secret as a Key Vault
// reference (api.bicep), so the value never appears in the app's settings. Purge protection is on:
// a deleted vault (and its secret) stays recoverable for softDeleteRetentionInDays and its name
// stays taken until then (README, "Tear down").

param name string
param location string
param tags object = {}
@secure()
param authSecret string
param authSecretName string = 'auth-secret'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true // roles (rbac.bicep), never access policies
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: authSecretName
  properties: {
    value: authSecret
    contentType: 'text/plain'
  }
}

output name string = vault.name
output vaultUri string = vault.properties.vaultUri
// Versionless: the Function App resolves the latest version (a rotated secret within a day, or at
// once on a restart).
output authSecretUri string = secret.properties.secretUri
