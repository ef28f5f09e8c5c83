// Entry point of the web UI bundle: styles and the <portier-app> element.
import './styles.css'
import './app.js'
