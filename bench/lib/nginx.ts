// nginx configured like distribution's "Authenticate proxy with nginx" recipe, the same with buffering off, and (as a
// reference for small requests: what a C proxy costs when it checks nothing) the tuned one without auth_basic.
// One worker process, like the anchor figures, so nginx and Portier each get one event loop.

export type NginxVariant = 'recipe' | 'tuned' | 'open'

export interface NginxSite {
  variant: NginxVariant
  port: number
  registryPort: number
  /** Directory for the pid file, logs and temp files (the request bodies nginx buffers). */
  dir: string
  cert: string
  key: string
  htpasswd: string
  /** Run the worker as this user (only meaningful when nginx starts as root). */
  user?: string
}

export function nginxConfig(site: NginxSite): string {
  const { dir } = site
  const tuned = site.variant !== 'recipe'
  const auth = site.variant !== 'open'
  // Not in the recipe: stream request and response bodies instead of spooling them, and keep upstream
  // connections alive (which needs HTTP/1.1 and an empty Connection header).
  const streaming = tuned ? ['      proxy_request_buffering off;', '      proxy_buffering off;', '      proxy_http_version 1.1;', '      proxy_set_header Connection "";'] : []
  return [
    'daemon off;',
    'worker_processes 1;',
    ...(site.user ? [`user ${site.user};`] : []),
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'events { worker_connections 1024; }',
    'http {',
    `  access_log ${dir}/access.log;`,
    `  client_body_temp_path ${dir}/client_body; proxy_temp_path ${dir}/proxy;`,
    `  fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
    `  upstream docker-registry { server 127.0.0.1:${site.registryPort};${tuned ? ' keepalive 32;' : ''} }`,
    // The recipe adds this header to answers the registry did not make (nginx's own 401s).
    "  map $upstream_http_docker_distribution_api_version $docker_distribution_api_version { 'registry/2.0' ''; default registry/2.0; }",
    '  server {',
    `    listen 127.0.0.1:${site.port} ssl;`,
    `    ssl_certificate ${site.cert};`,
    `    ssl_certificate_key ${site.key};`,
    // The recipe lists TLSv1.1 too, which current OpenSSL refuses anyway.
    '    ssl_protocols TLSv1.2;',
    "    ssl_ciphers 'EECDH+AESGCM:EDH+AESGCM:AES256+EECDH:AES256+EDH';",
    '    ssl_prefer_server_ciphers on;',
    '    ssl_session_cache shared:SSL:10m;',
    '    client_max_body_size 0;',
    '    chunked_transfer_encoding on;',
    '    location /v2/ {',
    '      if ($http_user_agent ~ "^(docker\\/1\\.(3|4|5(?!\\.[0-9]-dev))|Go ).*$" ) { return 404; }',
    ...(auth ? ['      auth_basic "Registry realm";', `      auth_basic_user_file ${site.htpasswd};`] : []),
    "      add_header 'Docker-Distribution-Api-Version' $docker_distribution_api_version always;",
    '      proxy_pass http://docker-registry;',
    '      proxy_set_header Host $http_host;',
    '      proxy_set_header X-Real-IP $remote_addr;',
    '      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
    '      proxy_set_header X-Forwarded-Proto $scheme;',
    '      proxy_read_timeout 900;',
    ...streaming,
    '    }',
    '  }',
    '}',
    '',
  ].join('\n')
}
