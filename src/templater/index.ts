/**
 * The templater: confd's model on Berth's store — watch keys, render templates, check, atomically
 * replace, reload. Usable on its own (`berth templater --config DIR`); the router builds on it.
 */
export { Templater, type Outcome, type TemplateData, type TemplaterOptions } from './templater.js';
export { loadResources, parseResource, type TemplateResource } from './resource.js';
