// Azure Web PubSub: pushes swarm events to browsers (DESIGN.md §2). Access keys are disabled, so
// the app publishes and mints client URLs with its managed identity (Web PubSub Service Owner,
// rbac.bicep); browsers connect with the short-lived client token the app hands out.

param name string
param location string
param tags object = {}
param sku string
param hubName string

resource webPubSub 'Microsoft.SignalRService/webPubSub@2023-02-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    capacity: 1
  }
  properties: {
    disableLocalAuth: true // no access keys / connection strings
    disableAadAuth: false
    publicNetworkAccess: 'Enabled'
    tls: {
      clientCertEnabled: false
    }
  }
}

// Declared so the hub's policy is explicit: clients need a token the app signed (no anonymous
// connections), and there are no event handlers because client → server goes over HTTP.
resource hub 'Microsoft.SignalRService/webPubSub/hubs@2023-02-01' = {
  parent: webPubSub
  name: hubName
  properties: {
    anonymousConnectPolicy: 'deny'
    eventHandlers: []
  }
}

output name string = webPubSub.name
output endpoint string = 'https://${webPubSub.properties.hostName}'
